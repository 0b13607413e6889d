// Package sample decides which requests are replayed, as the AWS sample
// handler's -percentage flags do. A keyed decision is a pure function of
// the key (a 64-bit FNV-1a hash, mixed, compared with a threshold): the
// same on every handler instance, under any concurrency, across restarts.
// It is not the AWS sample's function (that one seeds math/rand per
// request, which is slow); the share selected is the same.
package sample

import (
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
	ByAddr     By = "remoteaddr" // the client's IP address (the TCP peer)
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
	case PerRequest, ByAddr:
	case ByHeader:
		if header == "" {
			return nil, fmt.Errorf("percentage-by is header, but percentage-by-header is empty")
		}
	default:
		return nil, fmt.Errorf("percentage-by %q is not one of \"\", header, remoteaddr", by)
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

// Keep reports whether r is replayed. A request keyed by header that lacks
// the header is decided by its client address instead, so that one user's
// requests stay together (the AWS sample hashes the empty string: all such
// requests share one fate).
func (s *Sampler) Keep(r *httpstream.Request) bool {
	if s.all || s.none {
		return s.all
	}
	switch s.by {
	case ByHeader:
		if v, ok := r.Get(s.header); ok {
			return s.keyed(v)
		}
		s.Keyless.Add(1)
		return s.KeepAddr(r.Client.Addr())
	case ByAddr:
		return s.KeepAddr(r.Client.Addr())
	}
	return rand.Uint64() < s.threshold
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
