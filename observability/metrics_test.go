package observability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"xlvs/bench"
	"xlvs/bench/testbed"
)

// selector is one metric selector of a query: the metric and its label matchers.
type selector struct {
	where    string // "dashboard panel X" or "alert Y"
	metric   string
	matchers []matcher
}

type matcher struct{ label, op, value string }

var (
	selectorRE = regexp.MustCompile(`\b(xlvs_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// selectors extracts the xlvs metric selectors of a PromQL expression.
func selectors(where, expr string) []selector {
	var out []selector
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		s := selector{where: where, metric: m[1]}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			s.matchers = append(s.matchers, matcher{mm[1], mm[2], mm[3]})
		}
		out = append(out, s)
	}
	return out
}

// dashboardExprs returns every query of the dashboard, by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("dashboard without title or uid: %q %q", d.Title, d.UID)
	}
	out := map[string][]string{}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				out["variable "+v.Name] = append(out["variable "+v.Name], s)
			}
		}
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q query %s is empty", p.Title, tg.RefID)
			}
			out["panel "+p.Title] = append(out["panel "+p.Title], tg.Expr)
		}
	}
	return out
}

// ruleExprs returns every rule's expression, by alert name. The file is read line by line
// (alert, then expr inline or as a block): the test counts both so that none is missed.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	alerts := 0
	name := ""
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if a, ok := strings.CutPrefix(l, "- alert:"); ok {
			name = strings.TrimSpace(a)
			alerts++
			continue
		}
		e, ok := strings.CutPrefix(l, "expr:")
		if !ok {
			continue
		}
		e = strings.TrimSpace(e)
		if e == "|" || e == "|-" {
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var block []string
			for i+1 < len(lines) {
				next := lines[i+1]
				if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
					break
				}
				block = append(block, strings.TrimSpace(next))
				i++
			}
			e = strings.Join(block, " ")
		}
		if name == "" || out[name] != "" {
			t.Fatalf("prometheus-alerts.yml line %d: expr without its own alert", i+1)
		}
		out[name] = e
	}
	if alerts == 0 || len(out) != alerts {
		t.Fatalf("prometheus-alerts.yml: %d alerts, %d expressions", alerts, len(out))
	}
	return out
}

// TestKitCoversTheIssue: the dashboard and the rules cover what operators watch.
func TestKitCoversTheIssue(t *testing.T) {
	rules := ruleExprs(t)
	for _, want := range []string{"XlvsRealServerDown", "XlvsDropsRising", "XlvsConnectionTableNearFull", "XlvsSyncLag"} {
		if rules[want] == "" {
			t.Errorf("no alert %s", want)
		}
	}
	used := map[string]bool{}
	for _, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			for _, s := range selectors("", e) {
				used[s.metric] = true
			}
		}
	}
	for _, m := range []string{
		"xlvs_service_connections_total", "xlvs_real_server_connections_total", "xlvs_real_server_active_connections",
		"xlvs_dataplane_worker_packets_total", "xlvs_dataplane_socket_total", "xlvs_health_transitions_total",
		"xlvs_conntrack_entries", "xlvs_sync_lag_seconds_sum", "xlvs_sync_sent_conns_total", "xlvs_sync_applied_conns_total",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

// scraped is a parsed /metrics: each family's label sets, summaries also under their
// _sum and _count names.
type scraped map[string][]map[string]string

func parseScrape(t *testing.T, body string) scraped {
	t.Helper()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	out := scraped{}
	for name, f := range fams {
		var sets []map[string]string
		for _, m := range f.Metric {
			ls := map[string]string{}
			for _, l := range m.Label {
				ls[l.GetName()] = l.GetValue()
			}
			sets = append(sets, ls)
		}
		out[name] = sets
		if typ := f.GetType().String(); typ == "SUMMARY" || typ == "HISTOGRAM" {
			out[name+"_sum"], out[name+"_count"] = sets, sets
		}
	}
	return out
}

// check reports a selector whose metric is not exported, or whose = or =~ matcher
// matches no exported series (instance and job are Prometheus's, not xlvsd's).
func (s scraped) check(sel selector) error {
	sets, ok := s[sel.metric]
	if !ok {
		return fmt.Errorf("%s: metric %s is not exported by xlvsd", sel.where, sel.metric)
	}
	for _, m := range sel.matchers {
		if m.label == "instance" || m.label == "job" || m.op == "!=" || m.op == "!~" {
			continue
		}
		var re *regexp.Regexp
		if m.op == "=~" {
			var err error
			if re, err = regexp.Compile("^(?:" + m.value + ")$"); err != nil {
				return fmt.Errorf("%s: %s{%s=~%q}: %v", sel.where, sel.metric, m.label, m.value, err)
			}
		}
		found := false
		for _, ls := range sets {
			v, has := ls[m.label]
			if has && (re == nil && v == m.value || re != nil && re.MatchString(v)) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: %s{%s%s%q} matches no series xlvsd exports", sel.where, sel.metric, m.label, m.op, m.value)
		}
	}
	return nil
}

func TestScrapeCheckFindsMistakes(t *testing.T) {
	s := parseScrape(t, `# TYPE xlvs_a_total counter
xlvs_a_total{counter="rx"} 1
xlvs_a_total{counter="drop_x"} 1
# TYPE xlvs_lag_seconds summary
xlvs_lag_seconds_sum 1
xlvs_lag_seconds_count 2
`)
	for _, c := range []struct {
		expr string
		ok   bool
	}{
		{`rate(xlvs_a_total{counter="rx", instance=~"$instance"}[5m])`, true},
		{`sum(rate(xlvs_a_total{counter=~"drop_.*"}[5m]))`, true},
		{`rate(xlvs_lag_seconds_sum[5m]) / rate(xlvs_lag_seconds_count[5m])`, true},
		{`xlvs_b_total`, false},
		{`xlvs_a_total{counter="tx"}`, false},
		{`xlvs_a_total{counter=~"drop"}`, false}, // anchored, as PromQL's
		{`xlvs_a_total{queue="0"}`, false},
	} {
		var err error
		for _, sel := range selectors(c.expr, c.expr) {
			if e := s.check(sel); e != nil {
				err = e
			}
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v, want ok=%v", c.expr, err, c.ok)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("privileged test: CI is set but not running as root")
		}
		t.Skip("privileged test: needs root (namespaces, XDP, AF_XDP)")
	}
}

// binaries returns xlvsd and xlvsadm: $XLVS_BIN's, or built now.
func binaries(t *testing.T, ctx context.Context) bench.Binaries {
	t.Helper()
	dir := os.Getenv("XLVS_BIN")
	if dir == "" {
		dir = t.TempDir()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "xlvs/cmd/xlvsd", "xlvs/cmd/xlvsadm")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	return bench.Binaries{XLVSD: filepath.Join(dir, "xlvsd"), XLVSADM: filepath.Join(dir, "xlvsadm")}
}

// TestDashboardAndRulesMatchXlvsd scrapes a running xlvsd (a NAT testbed with a virtual
// service, a real server and both sync daemons) and checks every selector of the
// dashboard and of the alerting rules against what it exports.
func TestDashboardAndRulesMatchXlvsd(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bins := binaries(t, ctx)
	bed, err := testbed.New(testbed.Options{Layout: testbed.NATTwoArm, Reals: 1, Prefix: "obs"})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	defer func() {
		if err := bed.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	}()
	const metricsAddr = "127.0.0.1:9110" // the director's own loopback, in its namespace
	d, err := bench.StartDaemon(ctx, bed.Director, bins, "-i", bed.Ext.Iface, "-i", bed.Int.Iface,
		"--conn-max", "65536", "--metrics-listen", metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Errorf("xlvsd stop: %v\n%s", err, d.Log())
		}
	}()
	vip := bed.VIP.String() + ":80"
	for _, args := range [][]string{
		{"-A", "-t", vip, "-s", "wrr"},
		{"-a", "-t", vip, "-r", bed.Reals[0].Addr.String() + ":80", "-m", "-w", "2"},
		{"--start-daemon", "master", "--mcast-interface", bed.Int.Iface, "--syncid", "9"},
		{"--start-daemon", "backup", "--mcast-interface", bed.Int.Iface, "--syncid", "9"},
	} {
		if _, err := d.Adm(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return bed.Director.DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, d.Log())
	}
	var body strings.Builder
	_, err = io.Copy(&body, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", resp.StatusCode, err)
	}
	s := parseScrape(t, body.String())

	n := 0
	for where, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			for _, sel := range selectors("dashboard "+where, e) {
				n++
				if err := s.check(sel); err != nil {
					t.Error(err)
				}
			}
		}
	}
	for name, e := range ruleExprs(t) {
		sels := selectors("alert "+name, e)
		if len(sels) == 0 {
			t.Errorf("alert %s selects no xlvs metric: %s", name, e)
		}
		for _, sel := range sels {
			n++
			if err := s.check(sel); err != nil {
				t.Error(err)
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d selectors checked", n)
	}
	t.Logf("%d selectors of the dashboard and the rules checked against %d metric families", n, len(s))
}
