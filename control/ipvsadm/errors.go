package ipvsadm

import (
	"fmt"
	"strings"

	"xlvs/control/api"
)

// ErrorMessage is the message xlvsadm prints when the daemon refuses req: ipvsadm's text
// for the operation and error code ("Service not defined", "No such destination", ...),
// followed by the daemon's own explanation when that adds anything. For a restore the
// message starts with the offending input line. The daemon's messages name no option;
// the options that would help are added here (--stop-daemon ROLE for a running daemon).
func ErrorMessage(req *api.Request, e *api.Error) string {
	op := req.Op
	prefix := ""
	if op == api.OpRestore && e.Line > 0 {
		prefix = fmt.Sprintf("line %d: ", e.Line)
		for i := range req.Batch {
			if req.Batch[i].Line == e.Line {
				req = &req.Batch[i]
				op = req.Op
				break
			}
		}
	}
	base := ipvsText(op, e.Code)
	switch {
	case base == "":
		base = e.Message
	case e.Message != "" && !strings.EqualFold(e.Message, base):
		base += ": " + e.Message
	}
	if op == api.OpStartDaemon && e.Code == api.ErrCodeDaemonExists && req.Daemon != nil {
		base += fmt.Sprintf(" (stop it first with --stop-daemon %s)", req.Daemon.State)
	}
	return prefix + base
}

// ipvsText is libipvs's message for an operation that failed with code, or "".
func ipvsText(op, code string) string {
	switch code {
	case api.ErrCodeServiceExists:
		return "Service already exists"
	case api.ErrCodeDestExists:
		return "Destination already exists"
	case api.ErrCodeNoDest:
		return "No such destination"
	case api.ErrCodeNoService:
		switch op {
		case api.OpAddDest, api.OpEditDest, api.OpDelDest, api.OpAddLocalAddr, api.OpDelLocalAddr, api.OpGetLocalAddrs:
			return "Service not defined"
		}
		return "No such service"
	case api.ErrCodeLaddrExists:
		return "Local address already exists"
	case api.ErrCodeNoLocalAddr:
		return "No such Local address" // DPVS's capitalisation
	case api.ErrCodeMarkExists:
		return "Mark rule already exists"
	case api.ErrCodeNoMark:
		return "No such mark rule"
	case api.ErrCodeDaemonExists:
		// libipvs's ipvs_strerror for ipvs_start_daemon's EEXIST and ipvs_stop_daemon's
		// ESRCH (ipvsadm 1.31, libipvs/libipvs.c of e.g. Remsnet-LTD/ipvsadm at
		// 7aa3bd42505aadcccd3e59a372bceb5e85479292).
		return "Daemon has already run"
	case api.ErrCodeNoDaemon:
		return "No daemon is running"
	}
	return ""
}
