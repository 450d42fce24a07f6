// Package observability holds xlvs's Grafana dashboard (grafana-dashboard.json) and
// Prometheus alerting rules (prometheus-alerts.yml), installed by the Debian package in
// /usr/share/xlvs/. It has no code: its tests check that every metric the dashboard's
// queries and the rules' expressions select, and every label value they match, is one a
// running xlvsd exports (CI also runs `promtool check rules` and `promtool test rules`).
package observability
