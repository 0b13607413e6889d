// Package sample decides which requests are replayed, as the AWS sample
// handler's -percentage flags do. A keyed decision is a pure function of
// the key (a 64-bit FNV-1a hash, mixed, compared with a threshold): the
// same on every handler instance, under any concurrency, across restarts.
// It is not the AWS sample's function (that one seeds math/rand per
// request, which is slow); the share selected is the same.
package sample

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"github.com/shadowtap/shadowtap/internal/httpstream"
)

// By says what a decision is keyed on.
type By string

const (
	PerRequest By = ""           // each request on its own, at random
	ByHeader   By = "header"     // the value of a header
	ByCookie   By = "cookie"     // the value of a cookie
	ByQuery    By = "query"      // the value of a query parameter (as sent, not decoded)
	ByAddr     By = "remoteaddr" // the client's IP address (the TCP peer)
	ByXFF      By = "xff"        // the first address in X-Forwarded-For: the user behind a load balancer
)

// Sampler keeps a percentage of requests.
type Sampler struct {
	by        By
	header    string
	all, none bool
	threshold uint64

	Keyless atomic.Uint64 // header-keyed requests without the header
}

// New returns a sampler keeping percent (0-100) of requests or keys.
func New(percent float64, by By, header string) (*Sampler, error) {
	if math.IsNaN(percent) || percent < 0 || percent > 100 {
		return nil, fmt.Errorf("percentage %v is not between 0 and 100", percent)
	}
	switch by {
	case PerRequest, ByAddr, ByXFF:
	case ByHeader, ByCookie, ByQuery:
		if header == "" {
			return nil, fmt.Errorf("percentage-by is %s, but percentage-by-header (the %s name) is empty", by, by)
		}
	default:
		return nil, fmt.Errorf("percentage-by %q is not one of \"\", header, cookie, query, remoteaddr, xff", by)
	}
	s := &Sampler{by: by, header: header, none: percent <= 0}
	// A share just under 100% may round to 2^64, which uint64 cannot hold.
	if f := percent / 100 * 0x1p64; f >= 0x1p64 {
		s.all = true
	} else {
		s.threshold = uint64(f)
	}
	return s, nil
}

// Keep reports whether r is replayed. A request that lacks its key (the
// header, cookie or parameter; an X-Forwarded-For) is decided by its client
// address instead, so that one user's requests stay together (the AWS
// sample hashes the empty string: all such requests share one fate).
func (s *Sampler) Keep(r *httpstream.Request) bool {
	if s.all || s.none {
		return s.all
	}
	var key []byte
	ok := false
	switch s.by {
	case PerRequest:
		return rand.Uint64() < s.threshold
	case ByAddr:
		return s.KeepAddr(r.Client.Addr())
	case ByHeader:
		key, ok = r.Get(s.header)
	case ByCookie:
		key, ok = cookie(r, s.header)
	case ByQuery:
		key, ok = queryParam(r.Target(), s.header)
	case ByXFF:
		if v, found := r.Get("X-Forwarded-For"); found {
			first, _, _ := bytes.Cut(v, []byte(","))
			first = bytes.TrimSpace(first)
			// An address hashes as it would as a TCP peer, so a user
			// gets one decision whether or not a balancer is between.
			if a, err := netip.ParseAddr(string(first)); err == nil {
				return s.KeepAddr(a)
			}
			key, ok = first, len(first) > 0
		}
	}
	if !ok {
		s.Keyless.Add(1)
		return s.KeepAddr(r.Client.Addr())
	}
	return s.keyed(key)
}

// cookie returns the value of cookie name from the Cookie header lines.
func cookie(r *httpstream.Request, name string) ([]byte, bool) {
	for i := range r.Lines {
		if !bytes.EqualFold(r.Name(i), []byte("Cookie")) {
			continue
		}
		for _, part := range bytes.Split(r.Value(i), []byte(";")) {
			k, v, found := bytes.Cut(bytes.TrimSpace(part), []byte("="))
			if found && string(k) == name {
				return v, true
			}
		}
	}
	return nil, false
}

// queryParam returns the raw value of parameter name in target's query.
func queryParam(target []byte, name string) ([]byte, bool) {
	_, q, found := bytes.Cut(target, []byte("?"))
	if !found {
		return nil, false
	}
	for _, part := range bytes.Split(q, []byte("&")) {
		k, v, _ := bytes.Cut(part, []byte("="))
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

// KeepAddr decides by client address alone.
func (s *Sampler) KeepAddr(a netip.Addr) bool {
	if s.all || s.none {
		return s.all
	}
	b := a.Unmap().As16()
	return s.keyed(b[:])
}

// KeepKey decides for an arbitrary key.
func (s *Sampler) KeepKey(key []byte) bool {
	if s.all || s.none {
		return s.all
	}
	return s.keyed(key)
}

func (s *Sampler) keyed(key []byte) bool { return mix(fnv1a(key)) < s.threshold }

func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix is splitmix64's finalizer: FNV's low bits alone are poorly spread
// for short, similar keys.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}
