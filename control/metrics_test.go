package control

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/common/expfmt"

	"xlvs/control/api"
)

// TestMetricsScrape scrapes the handler and parses the exposition with Prometheus's own
// text parser.
func TestMetricsScrape(t *testing.T) {
	d := newDaemon(t)
	s := svc("tcp", "198.18.1.100", 80)
	mustOK(t, d, &api.Request{Op: api.OpAddService, Service: s})
	mustOK(t, d, &api.Request{Op: api.OpAddDest, Service: s, Dest: dest("198.18.2.11", 80, 7)})

	srv := httptest.NewServer(d.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	for _, name := range []string{
		"xlvs_build_info", "xlvs_service_connections_total", "xlvs_service_in_bytes_total",
		"xlvs_real_server_weight", "xlvs_real_server_active_connections", "xlvs_conntrack_entries",
		"xlvs_conntrack_capacity", "xlvs_dataplane_worker_packets_total", "xlvs_dataplane_socket_total",
	} {
		if fams[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	w := fams["xlvs_real_server_weight"]
	if w == nil || len(w.Metric) != 1 || w.Metric[0].GetGauge().GetValue() != 7 {
		t.Fatalf("weight metric %v", w)
	}
	labels := map[string]string{}
	for _, l := range w.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["address"] != "198.18.1.100" || labels["server"] != "198.18.2.11" || labels["forward"] != "Masq" || labels["protocol"] != "tcp" {
		t.Fatalf("labels %v", labels)
	}
	if c := fams["xlvs_conntrack_capacity"]; c.Metric[0].GetGauge().GetValue() <= 0 {
		t.Fatal("capacity not reported")
	}
}
