package replay

import (
	"bytes"
	"strconv"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// Edits are the only changes made to a captured request before it is sent:
//
//   - hop-by-hop headers are removed (Connection, Keep-Alive,
//     Proxy-Connection, Proxy-Authorization, Proxy-Authenticate, TE, Upgrade
//     and every header named in Connection). Transfer-Encoding and Trailer
//     are kept: the body is sent with its original chunk framing;
//   - the client address is appended to X-Forwarded-For (to the last such
//     line, or a new line when there is none);
//   - X-Forwarded-Port, X-Forwarded-Proto and X-Forwarded-Host are added
//     when absent (the production port, "http", the captured Host);
//   - Host is set to the destination's, unless KeepHost; a request without
//     Host gets one;
//   - the version is sent as HTTP/1.1, and the destination's path prefix is
//     put before an origin-form request-target.
//
// Everything else (method, request-target bytes, header order, casing, line
// terminators, body bytes) is sent as captured.
type Edits struct {
	Host       string // the destination's Host value
	KeepHost   bool
	PathPrefix string // prepended to origin-form targets; no trailing slash
}

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
	"Proxy-Authenticate", "TE", "Upgrade"}

// AppendRequest appends the request to send for r to dst and returns it
// together with the length of its head (where the body starts).
func (e *Edits) AppendRequest(dst []byte, r *httpstream.Request) (out []byte, headLen int) {
	raw := r.Raw
	lineEnd := r.RequestLineEnd()
	term := raw[lineEnd-1 : lineEnd]
	if lineEnd >= 2 && raw[lineEnd-2] == '\r' {
		term = raw[lineEnd-2 : lineEnd]
	}
	if e.PathPrefix == "" && string(r.Proto()) == "HTTP/1.1" {
		dst = append(dst, raw[:lineEnd]...)
	} else {
		dst = append(dst, r.Method()...)
		dst = append(dst, ' ')
		if t := r.Target(); len(t) > 0 && t[0] == '/' {
			dst = append(dst, e.PathPrefix...)
		}
		dst = append(dst, r.Target()...)
		dst = append(dst, " HTTP/1.1"...)
		dst = append(dst, term...)
	}

	// Headers named in Connection are hop-by-hop too.
	var named [][]byte
	lastXFF := -1
	var have struct{ host, port, proto, fhost bool }
	for i := range r.Lines {
		name := r.Name(i)
		switch {
		case equalFold(name, "Connection"):
			for _, n := range bytes.Split(r.Value(i), []byte(",")) {
				if n = bytes.TrimSpace(n); len(n) > 0 {
					named = append(named, n)
				}
			}
		case equalFold(name, "X-Forwarded-For"):
			lastXFF = i
		case equalFold(name, "Host"):
			have.host = true
		case equalFold(name, "X-Forwarded-Port"):
			have.port = true
		case equalFold(name, "X-Forwarded-Proto"):
			have.proto = true
		case equalFold(name, "X-Forwarded-Host"):
			have.fhost = true
		}
	}
	client := r.Client.Addr().Unmap().String()
	for i := range r.Lines {
		name := r.Name(i)
		if isHopByHop(name, named) {
			continue
		}
		l := r.LineBytes(i)
		lt := l[len(l)-1:]
		if len(l) >= 2 && l[len(l)-2] == '\r' {
			lt = l[len(l)-2:]
		}
		switch {
		case equalFold(name, "Host") && !e.KeepHost:
			dst = append(dst, name...)
			dst = append(dst, ": "...)
			dst = append(dst, e.Host...)
			dst = append(dst, lt...)
		case i == lastXFF:
			dst = append(dst, l[:len(l)-len(lt)]...)
			if len(r.Value(i)) > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, client...)
			dst = append(dst, lt...)
		default:
			dst = append(dst, l...)
		}
	}
	if !have.host {
		host := e.Host
		if e.KeepHost && r.Server.IsValid() {
			host = r.Server.Addr().Unmap().String()
		}
		dst = appendHeader(dst, "Host", host)
	}
	if lastXFF < 0 {
		dst = appendHeader(dst, "X-Forwarded-For", client)
	}
	if !have.port {
		dst = appendHeader(dst, "X-Forwarded-Port", strconv.Itoa(int(r.Server.Port())))
	}
	if !have.proto {
		dst = appendHeader(dst, "X-Forwarded-Proto", "http")
	}
	if h, ok := r.Get("Host"); ok && !have.fhost {
		dst = appendHeader(dst, "X-Forwarded-Host", string(h))
	}
	dst = append(dst, r.BlankLine()...)
	headLen = len(dst)
	return append(dst, r.Body()...), headLen
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

func isHopByHop(name []byte, named [][]byte) bool {
	for _, h := range hopByHop {
		if equalFold(name, h) {
			return true
		}
	}
	for _, n := range named {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }
