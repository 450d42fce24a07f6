// Package vrrpfifo follows keepalived's notify FIFO: the named pipe keepalived writes a
// line to at every VRRP state change (global_defs' vrrp_notify_fifo, or notify_fifo), so
// that xlvsd learns the state of the VRRP instance its sync daemon belongs to without a
// script per transition.
//
// # Role
//
// ParseLine reads one line into an Event; Watch keeps the FIFO open and calls back with each
// VRRP event (control/kaconf.go's followVRRP is the caller).
//
// # Conventions: the lines
//
// As keepalived's vrrp_notify.c (notify_fifo, of acassen/keepalived at commit
// a0b87106673d60b113439c9e261088099fb51895) writes them, one per event:
//
//	INSTANCE "VI_1" MASTER 150
//	GROUP "VG_1" BACKUP 0
//
// the type (INSTANCE, or GROUP for a vrrp_sync_group, whose priority is 0), the name in
// double quotes, the state — MASTER, BACKUP, FAULT, STOP (keepalived stopping) — or an
// event (MASTER_RX_LOWER_PRI, MASTER_PRIORITY, BACKUP_PRIORITY), and the effective
// priority. notify_fifo also carries the checker's lines (VS, RS, ...), which are not
// VRRP's and are skipped; so is anything else that does not parse.
//
// # Invariants: the FIFO
//
// keepalived opens the FIFO read-write, so its writes never wait for a reader and what it
// writes while nobody reads stays in the pipe (up to the pipe's 64 KiB) for the next
// reader; it creates the FIFO when the path does not exist and then removes it when it
// stops. Watch therefore creates the FIFO itself when it is missing (keepalived then uses
// it and leaves it in place), opens it read-write too (it never sees an end of file when
// keepalived goes), and checks the path every CheckEvery: a FIFO that keepalived
// replaced or removed is reopened (created again when missing).
//
// # Concurrency
//
// One goroutine per Watcher reads the FIFO and calls the callback, in the order of the
// lines. Close may be called from any goroutine, once.
package vrrpfifo
