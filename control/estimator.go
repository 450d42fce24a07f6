package control

import (
	"context"
	"time"

	"xlvs/dataplane"
)

// EstimatorInterval is how often rates are estimated, as the kernel's ip_vs_est.c.
const EstimatorInterval = 2 * time.Second

// estimator reproduces ip_vs_est.c: every two seconds the counters' increase, scaled
// (packets and connections by 2^10, bytes by 2^5) and halved for the 2 s period, moves
// an average a quarter of the way (avg += (rate - avg) >> 2). Reads round and unscale.
type estimator struct {
	lastConns, lastInPkts, lastOutPkts, lastInBytes, lastOutBytes uint64
	cps, inpps, outpps, inbps, outbps                             int64
}

func newEstimator(s dataplane.FlowStats) *estimator {
	e := &estimator{}
	e.reset(s)
	return e
}

// reset starts over from s with zero rates (-Z, as ip_vs_zero_estimator).
func (e *estimator) reset(s dataplane.FlowStats) {
	*e = estimator{lastConns: s.Conns, lastInPkts: s.InPkts, lastOutPkts: s.OutPkts, lastInBytes: s.InBytes, lastOutBytes: s.OutBytes}
}

func ewma(avg *int64, last *uint64, now uint64, shift uint) {
	rate := int64((now - *last) << shift)
	*last = now
	*avg += (rate - *avg) >> 2
}

// tick folds in one 2-second period ending with counters s.
func (e *estimator) tick(s dataplane.FlowStats) {
	ewma(&e.cps, &e.lastConns, s.Conns, 9)
	ewma(&e.inpps, &e.lastInPkts, s.InPkts, 9)
	ewma(&e.outpps, &e.lastOutPkts, s.OutPkts, 9)
	ewma(&e.inbps, &e.lastInBytes, s.InBytes, 4)
	ewma(&e.outbps, &e.lastOutBytes, s.OutBytes, 4)
}

func unscale(v int64, round int64, shift uint) uint64 {
	if v <= 0 {
		return 0
	}
	return uint64((v + round) >> shift)
}

// rates returns CPS, InPPS, OutPPS, InBPS, OutBPS.
func (e *estimator) rates() (cps, inpps, outpps, inbps, outbps uint64) {
	return unscale(e.cps, 0x1FF, 10), unscale(e.inpps, 0x1FF, 10), unscale(e.outpps, 0x1FF, 10),
		unscale(e.inbps, 0xF, 5), unscale(e.outbps, 0xF, 5)
}

// estimate runs one estimator period over every service and destination.
func (d *Daemon) estimate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.r.services {
		d.est(d.svcEst, s.id, d.dp.ServiceStats(s.id)).tick(d.dp.ServiceStats(s.id))
		for _, ds := range s.dests {
			d.est(d.destEst, ds.id, d.dp.DestStats(ds.id)).tick(d.dp.DestStats(ds.id))
		}
	}
}

// est returns the estimator of an ID, creating it from the current counters.
func (d *Daemon) est(m map[uint32]*estimator, id uint32, cur dataplane.FlowStats) *estimator {
	e := m[id]
	if e == nil {
		e = newEstimator(cur)
		m[id] = e
	}
	return e
}

// RunEstimator estimates rates every EstimatorInterval until ctx ends; every drainEvery
// periods it also stops redirecting replies to deleted FULLNAT local addresses that no
// connection uses any more.
func (d *Daemon) RunEstimator(ctx context.Context) {
	t := time.NewTicker(EstimatorInterval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.estimate()
			if n%drainEvery == 0 {
				d.reapDraining()
			}
		}
	}
}
