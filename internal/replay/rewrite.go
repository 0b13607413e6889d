package replay

import (
	"bytes"
	"regexp"
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
//
// A target's configuration may add rewrites (FixedHost, a path rewrite,
// removed, set, replaced and added headers, a marker header); they are the
// only other changes.
type Edits struct {
	Host       string // the destination's Host value
	KeepHost   bool
	PathPrefix string // prepended to origin-form targets; no trailing slash

	FixedHost   string         // Host to send, whatever was captured
	PathMatch   *regexp.Regexp // rewrite the request-target: matches replaced
	PathReplace string         // by this ($1 names a group)
	Remove      []string       // headers removed
	Set         []Header       // headers whose value is replaced (first line kept, later ones dropped), or added
	Replace     []Header       // headers whose value is replaced where present (credentials)
	Add         []Header       // header lines added
	Marker      Header         // added when Name is set: tells the test environment it is a replay
}

// Header is a header line to write.
type Header struct{ Name, Value string }

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
	"Proxy-Authenticate", "TE", "Upgrade"}

// SentHost is the Host value AppendRequest sends for r: an answer that
// repeats it (a Location, a link, a Host echo) names the test environment
// where production's named production, and the comparison sets the two
// side by side.
func (e *Edits) SentHost(r *httpstream.Request) string {
	captured, ok := r.Get("Host")
	switch {
	case e.FixedHost != "":
		return e.FixedHost
	case e.KeepHost && ok:
		return string(captured)
	case e.KeepHost && r.Server.IsValid():
		return r.Server.Addr().Unmap().String()
	}
	return e.Host
}

// AppendRequest appends the request to send for r to dst and returns it
// together with the length of its head (where the body starts).
func (e *Edits) AppendRequest(dst []byte, r *httpstream.Request) (out []byte, headLen int) {
	raw := r.Raw
	lineEnd := r.RequestLineEnd()
	term := raw[lineEnd-1 : lineEnd]
	if lineEnd >= 2 && raw[lineEnd-2] == '\r' {
		term = raw[lineEnd-2 : lineEnd]
	}
	if e.PathPrefix == "" && e.PathMatch == nil && string(r.Proto()) == "HTTP/1.1" {
		dst = append(dst, raw[:lineEnd]...)
	} else {
		target := r.Target()
		if e.PathMatch != nil {
			target = e.PathMatch.ReplaceAll(target, []byte(e.PathReplace))
		}
		dst = append(dst, r.Method()...)
		dst = append(dst, ' ')
		if len(target) > 0 && target[0] == '/' {
			dst = append(dst, e.PathPrefix...)
		}
		dst = append(dst, target...)
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
	client := "" // unknown for requests from files without addresses (GoReplay)
	if r.Client.IsValid() {
		client = r.Client.Addr().Unmap().String()
	}
	var setDone []bool
	if len(e.Set) > 0 {
		setDone = make([]bool, len(e.Set))
	}
	for i := range r.Lines {
		name := r.Name(i)
		if isHopByHop(name, named) || containsFold(e.Remove, name) {
			continue
		}
		l := r.LineBytes(i)
		lt := l[len(l)-1:]
		if len(l) >= 2 && l[len(l)-2] == '\r' {
			lt = l[len(l)-2:]
		}
		if j := indexHeader(e.Set, name); j >= 0 {
			if !setDone[j] {
				dst = appendLine(dst, name, e.Set[j].Value, lt)
				setDone[j] = true
			}
			continue
		}
		if j := indexHeader(e.Replace, name); j >= 0 {
			dst = appendLine(dst, name, e.Replace[j].Value, lt)
			continue
		}
		switch {
		case equalFold(name, "Host") && e.FixedHost != "":
			dst = appendLine(dst, name, e.FixedHost, lt)
		case equalFold(name, "Host") && !e.KeepHost:
			dst = appendLine(dst, name, e.Host, lt)
		case i == lastXFF && client != "":
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
		dst = appendHeader(dst, "Host", e.SentHost(r))
	}
	if lastXFF < 0 && client != "" {
		dst = appendHeader(dst, "X-Forwarded-For", client)
	}
	if !have.port && r.Server.IsValid() {
		dst = appendHeader(dst, "X-Forwarded-Port", strconv.Itoa(int(r.Server.Port())))
	}
	if !have.proto {
		dst = appendHeader(dst, "X-Forwarded-Proto", "http")
	}
	if h, ok := r.Get("Host"); ok && !have.fhost {
		dst = appendHeader(dst, "X-Forwarded-Host", string(h))
	}
	for j, h := range e.Set {
		if !setDone[j] {
			dst = appendHeader(dst, h.Name, h.Value)
		}
	}
	for _, h := range e.Add {
		dst = appendHeader(dst, h.Name, h.Value)
	}
	if e.Marker.Name != "" {
		dst = appendHeader(dst, e.Marker.Name, e.Marker.Value)
	}
	dst = append(dst, r.BlankLine()...)
	headLen = len(dst)
	return append(dst, r.Body()...), headLen
}

// appendLine writes a header line keeping the captured name's casing and
// line terminator.
func appendLine(dst, name []byte, value string, term []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, term...)
}

func indexHeader(hs []Header, name []byte) int {
	for i, h := range hs {
		if equalFold(name, h.Name) {
			return i
		}
	}
	return -1
}

func containsFold(names []string, name []byte) bool {
	for _, n := range names {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

func isHopByHop(name []byte, named [][]byte) bool {
	if containsFold(hopByHop, name) {
		return true
	}
	for _, n := range named {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }
