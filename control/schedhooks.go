package control

import (
	"slices"
	"strings"

	"xlvs/control/api"
	"xlvs/sched"
)

// Scheduler hooks. ip_vs_ctl.c (mainline 6.17-rc3, read in the Kingxukai/linux mirror
// at 0291023e7330, as ip_vs_wrr.c; ip_vs_rr.c at 9b44fff655e2) calls a service's
// scheduler only on the service's own destination changes — add_dest and upd_dest from
// __ip_vs_update_dest, del_dest from __ip_vs_unlink_dest — and binds a new scheduler
// (init_service) only when ip_vs_edit_service is given another -s. Editing another
// service, a service's persistence or flags, timeouts or a local address calls nothing,
// so wrr's mark, rr's position and the rest stay as they are. Here a hook is a
// sched.Rebuild (which carries over what the kernel's hooks keep), one per operation in
// the order of a batch, and a service whose hooks are not called keeps its scheduler
// instance.

// schedInput is what a service's scheduler is built from: the scheduler, its flags (0
// for the schedulers that ignore them) and the destinations as the scheduler sees them.
type schedInput struct {
	name  string
	flags sched.Flags
	dests []sched.Dest
}

func (a *schedInput) same(b *schedInput) bool {
	return a.name == b.name && a.flags == b.flags && slices.Equal(a.dests, b.dests)
}

// weighted reports whether some destination has a weight above zero.
func (a *schedInput) weighted() bool {
	return slices.ContainsFunc(a.dests, func(d sched.Dest) bool { return d.Weight > 0 })
}

// schedFlags is the scheduler flags of service cfg as its scheduler reads them: 0 for
// one that reads none, or when they do not parse (checkService refuses those).
func schedFlags(cfg *api.Service) sched.Flags {
	if !flagsMatter(cfg.Scheduler) {
		return 0
	}
	f, _ := sched.ParseFlags(strings.Join(cfg.SchedFlags, ","))
	return f
}

// flagsMatter reports whether the named scheduler reads the -b flags: only sh and mh do
// (at each decision, in the kernel). The kernel calls no scheduler hook when a service's
// flags change, so for any other scheduler a flags edit must leave the scheduler alone.
func flagsMatter(name string) bool { return name == "sh" || name == "mh" }

// schedInput returns s's scheduler input now. down lists destinations that health checks
// have failed (by ID): they are scheduled with weight 0 — no new connections, existing
// ones continue — without touching the rules.
func (s *ruleSvc) schedInput(down map[uint32]bool) schedInput {
	in := schedInput{name: s.cfg.Scheduler, flags: schedFlags(&s.cfg), dests: make([]sched.Dest, len(s.dests))}
	for i, d := range s.dests {
		sd := d.snapDest(down)
		in.dests[i] = sd.Sched()
	}
	return in
}

// destWeight is d's weight as scheduled: 0 while its health checks fail.
func destWeight(d *ruleDest, down map[uint32]bool) int32 {
	if down[d.id] {
		return 0
	}
	return d.cfg.Weight
}

// builtSched is a published service's scheduler with the input it was built from.
type builtSched struct {
	sched sched.Scheduler
	in    schedInput
}

// schedSteps are the hooks a change calls on one service, in order. Each is the
// service's scheduler input right after the operation that calls it, except the last,
// which stands for the input at the end (pending: not copied, as the next operation
// may make its Rebuild unnecessary).
type schedSteps struct {
	fresh   bool         // the service was added by the change: it had no scheduler before
	steps   []schedInput // the inputs after the hooks kept, in order
	pending bool         // one more hook after steps, its input the service's at the end
	add     bool         // the pending hook's input is the last of steps with destinations added
}

// schedHooks are the scheduler hooks a change calls, by service ID.
type schedHooks map[uint32]*schedSteps

// call records that the operation about to be applied to s calls s's scheduler (a hook,
// or a new scheduler bound: init); add reports that the operation only adds a
// destination. It must be called before the operation changes s.
//
// The pending hook's Rebuild is left out when the operation only adds a destination,
// since Rebuild through the pending input and then the new one gives what Rebuild
// straight to the new one does: the new destination (a new ID) has no state to carry;
// rr's position, overload flags and last weights of the others, lblc's tables and the
// tables sh, dh and mh build from the final list come out the same. Not so for wrr's cw
// (dest_changed's cw > mw, cw == 0 and cw/di*di+1 cases), except when the pending hook
// itself only added destinations to an input with a weight above zero: cw then came out
// of that input at most its mw and on its di grid, and adding destinations only raises
// mw and divides di, so that hook leaves cw alone. Without this a restore would Rebuild
// once per server, quadratic in the servers of a service.
func (h schedHooks) call(s *ruleSvc, down map[uint32]bool, add bool) {
	st := h[s.id]
	if st == nil {
		st = &schedSteps{}
		h[s.id] = st
	}
	if st.pending {
		skip := add && (s.cfg.Scheduler != "wrr" ||
			st.add && len(st.steps) > 0 && st.steps[len(st.steps)-1].weighted())
		if skip {
			return // the pending hook stands for the input after this operation too
		}
		st.steps = append(st.steps, s.schedInput(down))
	}
	st.pending, st.add = true, add
}

// scheduler returns s's scheduler for input in: prev's (the published one, nil if none)
// when no hook is called and the input is the same, else prev rebuilt through each hook
// in order and, if the input still differs (a health-check flip), once more.
func (s *ruleSvc) scheduler(prev *builtSched, h *schedSteps, counts sched.Counts, in schedInput) (*builtSched, error) {
	cur := prev
	var steps []schedInput
	pending := false
	if h != nil {
		steps, pending = h.steps, h.pending
		if h.fresh {
			cur = nil
		}
	}
	build := func(st schedInput) error {
		var old sched.Scheduler
		if cur != nil {
			old = cur.sched
		}
		sc, err := sched.Rebuild(old, counts, st.name, st.dests, st.flags)
		if err != nil {
			return err
		}
		cur = &builtSched{sched: sc, in: st}
		return nil
	}
	for _, st := range steps {
		if err := build(st); err != nil {
			return nil, err
		}
	}
	if pending || cur == nil || !cur.in.same(&in) {
		if err := build(in); err != nil {
			return nil, err
		}
	}
	return cur, nil
}
