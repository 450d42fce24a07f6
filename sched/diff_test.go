package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// world runs one scheduler and the kernel model side by side over the same counts.
type world struct {
	t      testing.TB
	r      *rand.Rand
	name   string
	flags  Flags
	v6     bool
	sim    *sim
	m      *kmodel
	s      Scheduler
	conns  []*kconn
	now    int64
	nextID uint32
	step   int
}

func newWorld(t testing.TB, seed uint64, name string, flags Flags, n int, thresholds bool) *world {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	w := &world{t: t, r: r, name: name, flags: flags, v6: r.IntN(3) == 0, sim: newSim(), nextID: 100}
	d := make([]Dest, n)
	for i := range d {
		d[i] = w.randDest(thresholds)
	}
	rs := rand.New(rand.NewPCG(seed, 0x7a0d)) // the twos draws: one stream each side
	rm := rand.New(rand.NewPCG(seed, 0x7a0d))
	w.m = newModel(name, d, flags, w.sim, rm.Uint32)
	s, err := New(name, d, flags)
	if err != nil {
		t.Fatal(err)
	}
	if tw, ok := s.(*twos); ok {
		tw.rnd = rs.Uint32
	}
	w.s = s
	return w
}

func (w *world) randDest(thresholds bool) Dest {
	w.nextID++
	d := Dest{ID: w.nextID, Port: uint16(80 + w.r.IntN(3))}
	switch k := w.r.IntN(10); {
	case k < 2:
		d.Weight = 0
	case k < 8:
		d.Weight = int32(1 + w.r.IntN(4))
	default:
		d.Weight = int32(1 + w.r.IntN(200))
	}
	if w.v6 {
		d.Addr = v4("fd00:2::1")
		d.Addr[14], d.Addr[15] = byte(d.ID>>8), byte(d.ID)
	} else {
		d.Addr = v4(fmt.Sprintf("198.18.2.%d", d.ID%250))
	}
	if thresholds && w.r.IntN(3) == 0 {
		d.UThreshold = uint32(1 + w.r.IntN(6))
		if w.r.IntN(2) == 0 {
			d.LThreshold = uint32(w.r.IntN(int(d.UThreshold) + 1))
		}
	}
	return d
}

func (w *world) flow() *Flow {
	f := &Flow{SrcPort: uint16(1024 + w.r.IntN(4)), Proto: []uint8{6, 17, 1}[w.r.IntN(3)], Now: w.now}
	if w.v6 {
		f.Src, f.Dst = v4("fd00:1::"), v4("fd00:3::")
		f.Src[15], f.Src[13] = byte(w.r.IntN(16)), byte(w.r.IntN(2))
		f.Dst[15] = byte(w.r.IntN(4))
	} else {
		f.Src = v4(fmt.Sprintf("198.18.1.%d", w.r.IntN(16)))
		f.Dst = v4(fmt.Sprintf("198.18.3.%d", w.r.IntN(4)))
	}
	return f
}

func (w *world) list() []Dest {
	d := make([]Dest, len(w.m.dests))
	for i, k := range w.m.dests {
		d[i] = k.d
	}
	return d
}

// newConn schedules on both sides and binds.
func (w *world) newConn() {
	f := w.flow()
	got := w.s.Schedule(w.sim, f)
	want := w.m.schedule(f)
	if got != want {
		w.t.Fatalf("%s flags %v step %d: scheduler chose %d, kernel model %d\nlist %+v\ncounts %v %v", w.name, w.flags, w.step, got, want, w.list(), w.sim.active, w.sim.inactive)
	}
	if want >= 0 {
		c := w.m.bind(w.m.dests[want], f.Proto == 6)
		// The packet that created it moves a TCP connection out of NONE: a SYN to
		// SYN_RECV (SYNACK with secure_tcp on DR), a sloppy ACK to ESTABLISHED.
		w.m.transition(c, []int{kSR, kSR, kSR, kSA, kES}[w.r.IntN(5)])
		w.conns = append(w.conns, c)
	}
}

func (w *world) run(steps int, edits bool) {
	for w.step = 0; w.step < steps; w.step++ {
		switch k := w.r.IntN(100); {
		case k < 55:
			w.newConn()
		case k < 80 && len(w.conns) > 0: // a connection ends
			j := w.r.IntN(len(w.conns))
			c := w.conns[j]
			w.conns = append(w.conns[:j], w.conns[j+1:]...)
			w.m.unbind(c)
		case k < 92 && len(w.conns) > 0: // a packet moves a connection to another state
			w.m.transition(w.conns[w.r.IntN(len(w.conns))], 1+w.r.IntN(kStates-1))
		case k < 96:
			w.now += []int64{1e6, 7 * 60e9, 25 * 3600e9}[w.r.IntN(3)]
		case edits:
			w.edit()
		}
		w.now += int64(w.r.IntN(1000)) * 1e6
	}
}

// edit changes the list on both sides: the kernel's add/del/edit, Rebuild here.
func (w *world) edit() {
	n := len(w.m.dests)
	// lblcr sets hold every server ever added to them (deleted ones too) in the kernel,
	// and at most lblcrSetMax here: stay within that.
	canAdd := n < 12 && (w.name != "lblcr" || w.nextID-100 < lblcrSetMax)
	switch k := w.r.IntN(3); {
	case k == 0 && canAdd || n == 0 && canAdd:
		w.m.add(w.randDest(true))
	case n == 0:
		return
	case k == 1 && n > 1:
		w.m.del(w.r.IntN(n))
	default:
		i := w.r.IntN(n)
		d := w.m.dests[i].d
		weight := int32(w.r.IntN(5))
		u, l := d.UThreshold, d.LThreshold
		if w.r.IntN(2) == 0 {
			u = uint32(w.r.IntN(7))
			l = 0
			if u > 0 && w.r.IntN(2) == 0 {
				l = uint32(w.r.IntN(int(u) + 1))
			}
		}
		w.m.edit(i, weight, u, l)
	}
	s, err := Rebuild(w.s, w.sim, w.name, w.list(), w.flags)
	if err != nil {
		w.t.Fatal(err)
	}
	if tw, ok := s.(*twos); ok {
		tw.rnd = w.s.(*twos).rnd
	}
	w.s = s
}

func diffConfigs() []struct {
	name  string
	flags Flags
} {
	var out []struct {
		name  string
		flags Flags
	}
	for _, n := range Names() {
		out = append(out, struct {
			name  string
			flags Flags
		}{n, 0})
	}
	for _, f := range []Flags{FlagSched1, FlagSched2, FlagSched1 | FlagSched2} {
		out = append(out, struct {
			name  string
			flags Flags
		}{"sh", f}, struct {
			name  string
			flags Flags
		}{"mh", f})
	}
	return out
}

// TestDifferential checks every scheduler against the kernel model over random server
// lists, loads, thresholds and flows: the same server each time.
func TestDifferential(t *testing.T) {
	for _, c := range diffConfigs() {
		t.Run(fmt.Sprintf("%s/%d", c.name, c.flags), func(t *testing.T) {
			for seed := uint64(1); seed <= 30; seed++ {
				n := 1 + int(seed%9) // lblcr: at most lblcrSetMax servers, so sets never fill
				newWorld(t, seed, c.name, c.flags, n, seed%3 != 0).run(300, false)
			}
		})
	}
}

// TestDifferentialEdits adds, deletes and edits servers between decisions: Rebuild must
// carry over what the kernel keeps.
func TestDifferentialEdits(t *testing.T) {
	for _, c := range diffConfigs() {
		t.Run(fmt.Sprintf("%s/%d", c.name, c.flags), func(t *testing.T) {
			for seed := uint64(1); seed <= 20; seed++ {
				w := newWorld(t, seed, c.name, c.flags, 1+int(seed%6), true)
				w.run(400, true)
			}
		})
	}
}

// FuzzSchedule runs the differential from fuzzed seeds and sizes.
func FuzzSchedule(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(0), true)
	f.Add(uint64(99), uint8(8), uint8(5), false)
	f.Add(uint64(7), uint8(1), uint8(12), true)
	cfgs := diffConfigs()
	f.Fuzz(func(t *testing.T, seed uint64, n, which uint8, edits bool) {
		c := cfgs[int(which)%len(cfgs)]
		size := 1 + int(n)%lblcrSetMax
		newWorld(t, seed, c.name, c.flags, size, true).run(100, edits)
	})
}
