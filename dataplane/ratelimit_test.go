package dataplane

import (
	"math/rand/v2"
	"testing"
	"time"

	"xlvs/conntrack"
	"xlvs/dataplane/xsk"
)

func TestTokenBucket(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name        string
		rate, burst int
		at          []int64 // event times
		want        string  // per event: + allowed, - refused
	}{
		{"burst then refuse", 1000, 3, []int64{0, 0, 0, 0, 0}, "+++--"},
		{"refill one per interval", 1000, 3, []int64{0, 0, 0, 0, ms - 1, ms, ms, 2 * ms}, "+++--+-+"},
		{"refill capped at the burst", 1000, 2, []int64{0, 0, 0, 100 * ms, 100 * ms, 100 * ms}, "++-++-"},
		{"clock going back is ignored", 1000, 1, []int64{10 * ms, 5 * ms, 11 * ms}, "+-+"},
		{"rate 1", 1, 1, []int64{0, 999 * ms, 1000 * ms}, "+-+"},
		{"burst 0 means 1", 1000, 0, []int64{0, 0}, "+-"},
		{"no limit", 0, 0, []int64{0, 0, 0, 0}, "++++"},
		{"negative rate: no limit", -1, 5, []int64{0, 0, 0, 0, 0, 0, 0}, "+++++++"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTokenBucket(tc.rate, tc.burst)
			got := make([]byte, len(tc.at))
			for i, now := range tc.at {
				got[i] = "-+"[b2i(b.allow(now))]
			}
			if string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestTokenBucketDifferential compares the bucket with a slow reference that counts
// tokens scaled by 1e9 (one token = 1e9 units, refilled at rate units per nanosecond),
// on random event times, for rates that divide a second evenly.
func TestTokenBucketDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, rate := range []int{1, 4, 50, 1000, 1_000_000} {
		for _, burst := range []int{1, 7, 50} {
			b := newTokenBucket(rate, burst)
			tokens := int64(burst) * 1e9 // the reference
			var now, last int64
			for i := 0; i < 20000; i++ {
				now += r.Int64N(3 * int64(time.Second) / int64(rate))
				tokens = min(tokens+(now-last)*int64(rate), int64(burst)*1e9)
				last = now
				want := tokens >= 1e9
				if want {
					tokens -= 1e9
				}
				if got := b.allow(now); got != want {
					t.Fatalf("rate %d burst %d, event %d at %d: allow %v, reference %v", rate, burst, i, now, got, want)
				}
			}
		}
	}
}

// limitRig is a one-armed dataplane whose UDP service 198.18.1.100:80 has no real server,
// so every packet to it is answered with port unreachable (the director's own ICMP).
func limitRig(t *testing.T, rate, burst int) (*Dataplane, *xsk.Fake, *worker) {
	t.Helper()
	r := newRigSpec(t, rigSpec{
		ports:    []rigPort{{name: "ext0", ifindex: ifExt, mac: macDirExt}},
		cfg:      Config{Batch: 64, Conntrack: conntrack.Config{MaxEntries: 4096}, ICMPRate: rate, ICMPBurst: burst},
		routes:   routes("198.18.1.0/24", ifExt),
		neigh:    map[NeighKey][6]byte{{Ifindex: ifExt, Addr: a16(client)}: macClient},
		services: services(t, "rr", SvcKey{Addr: a16(vip), Port: 80}, nil, nil, []uint8{17}, []uint32{1}),
	})
	return r.dp, r.eth, r.w
}

// TestICMPRateLimit: a burst of packets to a service without real servers gets at most
// the bucket's burst (plus what refills meanwhile) of port unreachables; the rest are
// counted as rate limited and not sent; every packet counts as no_dest; no frame leaks;
// the limited path allocates nothing. With the limit off every packet is answered.
func TestICMPRateLimit(t *testing.T) {
	const n = 200
	frame := build(t, pkt{srcMAC: macClient, dstMAC: macDirExt, src: client, dst: vip, sport: 40000, dport: 80, udp: true})
	send := func(ext *xsk.Fake, w *worker) {
		for i := 0; i < n; i++ {
			ext.Inject(frame)
			if i%64 == 63 {
				w.poll()
			}
		}
		for w.poll() > 0 {
		}
	}

	t.Run("limited", func(t *testing.T) {
		dp, ext, w := limitRig(t, 1000, 50)
		start := time.Now()
		send(ext, w)
		elapsed := time.Since(start)
		sent, limited := len(ext.Sent()), w.st.icmpLimited.load()
		ws, _ := dp.Stats()
		if sent < 50 || int64(sent) > 50+elapsed.Milliseconds()+1 || sent+int(limited) != n {
			t.Fatalf("%d answers sent, %d rate limited in %v; want 50 plus one per millisecond, the rest limited", sent, limited, elapsed)
		}
		if ws[0].ICMPSent != uint64(sent) || ws[0].ICMPRateLimited != limited || ws[0].Drops["no_dest"] != n {
			t.Fatalf("stats %+v", ws[0])
		}
		for _, f := range ext.Sent() {
			checkICMP(t, f)
		}
		// Empty the bucket, then the limited path must not allocate.
		for w.icmpLimit.allow(dp.now()) {
		}
		w.icmpLimit.last = 1 << 62 // no refill during the measurement
		ext.OnTransmit = func([]byte) {}
		if a := testing.AllocsPerRun(100, func() {
			ext.Inject(frame)
			w.poll()
		}); a != 0 {
			t.Fatalf("%v allocations per rate-limited answer", a)
		}
		w.poll()
		if got := ext.FramesAccounted(); got != 1024 {
			t.Fatalf("frames accounted %d, want 1024", got)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		_, ext, w := limitRig(t, NoICMPLimit, 0)
		send(ext, w)
		if sent := len(ext.Sent()); sent != n || w.st.icmpLimited.load() != 0 {
			t.Fatalf("%d of %d answered, %d limited", sent, n, w.st.icmpLimited.load())
		}
	})
}
