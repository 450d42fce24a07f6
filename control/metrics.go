package control

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"xlvs/control/api"
)

// Metrics are read at scrape time from the same sources as xlvsadm's listings: nothing is
// recorded on the packet path for them.
var (
	svcLabels  = []string{"protocol", "address", "port"}
	destLabels = []string{"protocol", "address", "port", "server", "server_port", "forward"}

	mBuild = prometheus.NewDesc("xlvs_build_info", "xlvs version and Go version.", []string{"version", "goversion"}, nil)

	mSvcConns    = prometheus.NewDesc("xlvs_service_connections_total", "Connections scheduled for the virtual service.", svcLabels, nil)
	mSvcInPkts   = prometheus.NewDesc("xlvs_service_in_packets_total", "Packets from clients to the virtual service.", svcLabels, nil)
	mSvcOutPkts  = prometheus.NewDesc("xlvs_service_out_packets_total", "Packets from real servers back to clients.", svcLabels, nil)
	mSvcInBytes  = prometheus.NewDesc("xlvs_service_in_bytes_total", "IP bytes from clients to the virtual service.", svcLabels, nil)
	mSvcOutBytes = prometheus.NewDesc("xlvs_service_out_bytes_total", "IP bytes from real servers back to clients.", svcLabels, nil)
	mSvcCPS      = prometheus.NewDesc("xlvs_service_connections_per_second", "Estimated connection rate (IPVS estimator).", svcLabels, nil)

	mDestConns    = prometheus.NewDesc("xlvs_real_server_connections_total", "Connections scheduled to the real server.", destLabels, nil)
	mDestInPkts   = prometheus.NewDesc("xlvs_real_server_in_packets_total", "Packets forwarded to the real server.", destLabels, nil)
	mDestOutPkts  = prometheus.NewDesc("xlvs_real_server_out_packets_total", "Packets from the real server back to clients.", destLabels, nil)
	mDestInBytes  = prometheus.NewDesc("xlvs_real_server_in_bytes_total", "IP bytes forwarded to the real server.", destLabels, nil)
	mDestOutBytes = prometheus.NewDesc("xlvs_real_server_out_bytes_total", "IP bytes from the real server back to clients.", destLabels, nil)
	mDestActive   = prometheus.NewDesc("xlvs_real_server_active_connections", "ActiveConn: TCP connections in SYN_SENT, SYN_RECV, SYNACK or ESTABLISHED (as IPVS counts them).", destLabels, nil)
	mDestInact    = prometheus.NewDesc("xlvs_real_server_inactive_connections", "InActConn: every other connection, UDP included.", destLabels, nil)
	mDestWeight   = prometheus.NewDesc("xlvs_real_server_weight", "Configured weight (0 = quiesced).", destLabels, nil)

	mCtEntries  = prometheus.NewDesc("xlvs_conntrack_entries", "Entries in the connection table.", nil, nil)
	mCtCapacity = prometheus.NewDesc("xlvs_conntrack_capacity", "Capacity of the connection table (--conn-max).", nil, nil)

	mWorker = prometheus.NewDesc("xlvs_dataplane_worker_packets_total", "Worker packet counters by queue and counter (rx, tx, forwarded, drop_<reason>, ...).", []string{"queue", "counter"}, nil)
	mSocket = prometheus.NewDesc("xlvs_dataplane_socket_total", "AF_XDP socket counters (ethtool -S style) by interface, queue and counter.", []string{"interface", "queue", "counter"}, nil)
	mHealth = prometheus.NewDesc("xlvs_health_transitions_total", "Health-check transitions applied (server down/up, weight, quorum, sorry server).", nil, nil)
	mXDP    = prometheus.NewDesc("xlvs_xdp_packets_total", "XDP program verdicts by interface.", []string{"interface", "verdict"}, nil)

	// Connection sync (--start-daemon), control/syncd's counters.
	mSyncRunning     = prometheus.NewDesc("xlvs_sync_daemon_running", "1 for each sync daemon role running (master, backup).", []string{"state"}, nil)
	mSyncQueued      = prometheus.NewDesc("xlvs_sync_queued_conns_total", "Connections and templates the workers queued for the sync master.", nil, nil)
	mSyncQueueFull   = prometheus.NewDesc("xlvs_sync_queue_full_total", "Entries the workers dropped because their sync queue was full.", nil, nil)
	mSyncSentMsgs    = prometheus.NewDesc("xlvs_sync_sent_messages_total", "Sync messages the master sent.", nil, nil)
	mSyncSentConns   = prometheus.NewDesc("xlvs_sync_sent_conns_total", "Connections and templates the master sent.", nil, nil)
	mSyncSendErrors  = prometheus.NewDesc("xlvs_sync_send_errors_total", "Sync messages the socket refused (not for want of room).", nil, nil)
	mSyncSendWaits   = prometheus.NewDesc("xlvs_sync_send_waits_total", "Waits for room in a full sync socket buffer.", nil, nil)
	mSyncSendDrops   = prometheus.NewDesc("xlvs_sync_send_drops_total", "Entries the master did not send, by reason (would_block, send_error, encode, mixed_family).", []string{"reason"}, nil)
	mSyncLag         = prometheus.NewDesc("xlvs_sync_lag_seconds", "Time from a worker queuing an entry to its message being sent (count and sum over every entry sent).", nil, nil)
	mSyncLagMax      = prometheus.NewDesc("xlvs_sync_lag_max_seconds", "Largest lag of an entry sent.", nil, nil)
	mSyncLagLast     = prometheus.NewDesc("xlvs_sync_lag_last_seconds", "Lag of the oldest entry of the last message sent.", nil, nil)
	mSyncRecvMsgs    = prometheus.NewDesc("xlvs_sync_received_messages_total", "Datagrams the backup received.", nil, nil)
	mSyncRecvConns   = prometheus.NewDesc("xlvs_sync_received_conns_total", "Entries decoded from the messages the backup accepted.", nil, nil)
	mSyncApplied     = prometheus.NewDesc("xlvs_sync_applied_conns_total", "Entries the backup applied to the connection table.", nil, nil)
	mSyncRecvErrors  = prometheus.NewDesc("xlvs_sync_receive_errors_total", "Socket errors while receiving sync messages.", nil, nil)
	mSyncRecvDrops   = prometheus.NewDesc("xlvs_sync_receive_drops_total", "Messages (short, malformed, version, syncid) and entries (skipped, protocol, state, method) the backup dropped, by reason.", []string{"reason"}, nil)
	mSyncApplyErrors = prometheus.NewDesc("xlvs_sync_apply_errors_total", "Entries the dataplane refused to apply, by reason.", []string{"reason"}, nil)
	mSyncIgnored     = prometheus.NewDesc("xlvs_sync_ignored_options_total", "Options the backup accepted and ignored (seq_data, pe_data).", []string{"option"}, nil)
	mSyncTableReqs   = prometheus.NewDesc("xlvs_sync_table_requests_total", "Whole-table requests (xlvs only) sent by this director's backup role and heard by its master role, by direction (sent, send_error, received).", []string{"direction"}, nil)
	mSyncTableSends  = prometheus.NewDesc("xlvs_sync_table_sends_total", "Whole-table sends of the master role.", nil, nil)
	mSyncTableConns  = prometheus.NewDesc("xlvs_sync_table_conns_total", "Connections and templates walked by whole-table sends.", nil, nil)
)

type collector struct{ d *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	ch <- prometheus.MustNewConstMetric(mBuild, prometheus.GaugeValue, 1, Version, runtime.Version())
	svcs, _ := d.list(nil)
	for _, s := range svcs {
		sl := []string{s.Protocol, s.Addr.String(), strconv.Itoa(int(s.Port))}
		if s.Protocol == api.ProtoFWMark {
			// A fwmark service has no address: the mark (and family) tell it apart.
			sl[1] = fmt.Sprintf("fwmark %d ipv%d", s.FWMark, s.Family)
		}
		counter := func(desc *prometheus.Desc, v uint64, labels []string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
		}
		gauge := func(desc *prometheus.Desc, v float64, labels []string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
		}
		counter(mSvcConns, s.Stats.Conns, sl)
		counter(mSvcInPkts, s.Stats.InPkts, sl)
		counter(mSvcOutPkts, s.Stats.OutPkts, sl)
		counter(mSvcInBytes, s.Stats.InBytes, sl)
		counter(mSvcOutBytes, s.Stats.OutBytes, sl)
		gauge(mSvcCPS, float64(s.Stats.CPS), sl)
		for _, ds := range s.Dests {
			dl := append(append([]string(nil), sl...), ds.Addr.String(), strconv.Itoa(int(ds.Port)), forwardName(ds.Method))
			counter(mDestConns, ds.Stats.Conns, dl)
			counter(mDestInPkts, ds.Stats.InPkts, dl)
			counter(mDestOutPkts, ds.Stats.OutPkts, dl)
			counter(mDestInBytes, ds.Stats.InBytes, dl)
			counter(mDestOutBytes, ds.Stats.OutBytes, dl)
			gauge(mDestActive, float64(ds.ActiveConns), dl)
			gauge(mDestInact, float64(ds.InactConns), dl)
			gauge(mDestWeight, float64(ds.Weight), dl)
		}
	}
	ct := d.dp.Conntrack()
	ch <- prometheus.MustNewConstMetric(mCtEntries, prometheus.GaugeValue, float64(ct.Len()))
	ch <- prometheus.MustNewConstMetric(mCtCapacity, prometheus.GaugeValue, float64(ct.Cap()))
	ch <- prometheus.MustNewConstMetric(mHealth, prometheus.CounterValue, float64(d.healthEvents.Load()))
	queues, xdp := d.dataplaneStats()
	for _, q := range queues {
		for name, v := range q.Counters {
			if q.Interface == "worker" {
				ch <- prometheus.MustNewConstMetric(mWorker, prometheus.CounterValue, float64(v), strconv.Itoa(q.Queue), name)
			} else {
				ch <- prometheus.MustNewConstMetric(mSocket, prometheus.CounterValue, float64(v), q.Interface, strconv.Itoa(q.Queue), name)
			}
		}
	}
	for _, x := range xdp {
		for name, v := range x.Counters {
			ch <- prometheus.MustNewConstMetric(mXDP, prometheus.CounterValue, float64(v), x.Interface, name)
		}
	}
	d.collectSync(ch)
}

func (d *Daemon) collectSync(ch chan<- prometheus.Metric) {
	running := map[string]bool{}
	for _, r := range d.sync.Running() {
		running[r.Role.String()] = true
	}
	for _, r := range []string{"master", "backup"} {
		v := 0.0
		if running[r] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(mSyncRunning, prometheus.GaugeValue, v, r)
	}
	st := d.sync.Stats()
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	counter(mSyncQueued, st.Queued)
	counter(mSyncQueueFull, st.QueueFull)
	counter(mSyncSentMsgs, st.Messages)
	counter(mSyncSentConns, st.Conns)
	counter(mSyncSendErrors, st.SendErrors)
	counter(mSyncSendWaits, st.SendWaits)
	for k, v := range st.Drops {
		counter(mSyncSendDrops, v, k)
	}
	ch <- prometheus.MustNewConstSummary(mSyncLag, st.LagCount, st.LagSum.Seconds(), nil)
	ch <- prometheus.MustNewConstMetric(mSyncLagMax, prometheus.GaugeValue, st.LagMax.Seconds())
	ch <- prometheus.MustNewConstMetric(mSyncLagLast, prometheus.GaugeValue, st.LagLast.Seconds())
	counter(mSyncRecvMsgs, st.Received)
	counter(mSyncRecvConns, st.Decoded)
	counter(mSyncApplied, st.Applied)
	counter(mSyncRecvErrors, st.RecvErrors)
	for k, v := range st.Dropped {
		counter(mSyncRecvDrops, v, k)
	}
	for k, v := range st.ApplyErrors {
		counter(mSyncApplyErrors, v, k)
	}
	for k, v := range st.Ignored {
		counter(mSyncIgnored, v, k)
	}
	counter(mSyncTableReqs, st.RequestsSent, "sent")
	counter(mSyncTableReqs, st.RequestSendErrors, "send_error")
	counter(mSyncTableReqs, st.RequestsReceived, "received")
	counter(mSyncTableSends, st.TableSends)
	counter(mSyncTableConns, st.TableConns)
}

// forwardName is ipvsadm's name of a forwarding method.
func forwardName(m string) string {
	switch m {
	case api.MethodMasq:
		return "Masq"
	case api.MethodTunnel:
		return "Tunnel"
	case api.MethodLocal:
		return "Local"
	case api.MethodFullNAT:
		return "FullNat"
	default:
		return "Route"
	}
}

// MetricsHandler serves the daemon's metrics in the Prometheus exposition format.
func (d *Daemon) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
