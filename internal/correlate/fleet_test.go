package correlate

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"testing"

	"github.com/shadowtap/shadowtap/internal/diff"
)

// recordingFleet keeps what a table publishes; its keys are plain
// hashes. The store package tests the real one on Redis.
type recordingFleet struct {
	mu        sync.Mutex
	published []Item
}

func (f *recordingFleet) Key(entity, value string) FleetKey {
	h := sha256.Sum256([]byte(entity + "\x00" + value))
	var k FleetKey
	copy(k[:], h[:])
	return k
}
func (f *recordingFleet) Publish(it Item) {
	f.mu.Lock()
	f.published = append(f.published, it)
	f.mu.Unlock()
}
func (f *recordingFleet) Lookup(context.Context, []FleetKey) []Item { return nil }
func (f *recordingFleet) Watch(func(Item))                          {}
func (f *recordingFleet) Stats() FleetStats                         { return FleetStats{} }
func (f *recordingFleet) Close()                                    {}

// A value another handler said it awaits, then paired here, is published
// under its own key: the fleet finds it where the others look.
func TestPairOfAValueTheFleetToldOf(t *testing.T) {
	fl := &recordingFleet{}
	tb := New(Options{Fleet: fl})
	key := fl.Key("", prodSid)
	tb.takeIn(Item{Key: key, State: Awaited})
	cookie := func(v string) diff.Message {
		return diff.Message{Status: 200, Header: http.Header{"Set-Cookie": {"sid=" + v + "; Path=/"}}}
	}
	tb.Learn([]byte("POST /api/login HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), cookie(prodSid), cookie(candSid))
	var paired []Item
	for _, it := range fl.published {
		if it.State == Paired {
			paired = append(paired, it)
		}
	}
	if len(paired) != 1 || paired[0].Key != key || paired[0].Target != candSid {
		t.Errorf("published %+v, want the pair under %x", fl.published, key[:4])
	}
}
