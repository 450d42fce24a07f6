package control

import (
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/prometheus/common/expfmt"

	"xlvs/version"
)

// TestBuildInfo: xlvs_build_info carries the version every command's --version prints.
func TestBuildInfo(t *testing.T) {
	d := newDaemon(t)
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
		t.Fatal(err)
	}
	f := fams["xlvs_build_info"]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("xlvs_build_info: %v", f)
	}
	labels := map[string]string{}
	for _, l := range f.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != version.String() || labels["version"] == "" || labels["goversion"] != runtime.Version() {
		t.Fatalf("labels %v, want version %q", labels, version.String())
	}
}
