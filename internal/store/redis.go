// Package store shares a fleet's correlation pairs through Redis or
// Valkey (correlate.store: redis://, rediss://, valkey://, valkeys://),
// with github.com/redis/go-redis, which speaks both.
//
// Layout, per deployment namespace and target:
//
//	shadowtap:{ns}:{target}:p:{key}  one production value: its state and, once paired, the target's value; with a TTL
//	shadowtap:{ns}:{target}          the channel each publish is also sent on, for the handlers waiting
//
// {key} is a keyed hash (HMAC-SHA256 under the fleet's secret) of the
// production value, and the target's value is sealed (AES-GCM under a key
// from the same secret): the store never holds a production credential,
// nor a test one in clear.
//
// The store slow or down never stops capture or replay: writes go through
// a bounded queue that drops (counted) when it is full; after a failure
// the store is left alone for a backoff (100 ms doubling to 10 s) in
// which lookups answer nothing at once and writes are dropped; a warning
// is logged at most once a minute; the subscription is remade when the
// store is back.
package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/correlate"
	"github.com/shadowtap/shadowtap/internal/ratelog"
)

func init() {
	// The client logs each failed dial itself, unbounded; a link counts
	// failures and warns once a minute instead.
	redis.SetLogger(silent{})
}

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// options are the client's options for the store at s (see
// config.CheckStore).
func options(s string) (*redis.Options, error) {
	if err := config.CheckStore(s); err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if rest, ok := strings.CutPrefix(u.Scheme, "valkey"); ok {
		u.Scheme = "redis" + rest // the same protocol
	}
	o, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("store %q: %w", s, err)
	}
	// Bounded everywhere: a slow store costs a request a lookup's timeout,
	// never a stalled pipeline; retries are the backoff's, not the client's.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 500*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	o.MaxRetries = -1
	o.PoolSize = 8
	return o, nil
}

// Options of one target's link.
type Options struct {
	URL       string
	Namespace string // the deployment's: fleets of two deployments on one store do not meet
	Target    string
	// Secret keys the hashes and seals the values; every handler of the
	// fleet must have the same (SHADOWTAP_CORRELATE_KEY).
	Secret []byte
	Log    *slog.Logger
}

// prefix starts the keys of the options' deployment: shadowtap:{ns}:.
func (o Options) prefix() string {
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	return "shadowtap:" + ns + ":"
}

// limiter is where a link warns, at most once a minute per kind.
func (o Options) limiter() *ratelog.Limiter {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	return ratelog.New(log, time.Minute)
}

// Link is one target's connection to the store: a correlate.Fleet. Its
// two goroutines (the writer and the subscriber) end with Close.
type Link struct {
	client  *redis.Client
	prefix  string  // shadowtap:{ns}:{target}
	self    [8]byte // this link's id, on what it publishes: what comes back is not taken in again
	hashKey []byte
	aead    cipher.AEAD
	log     *ratelog.Limiter

	queue   chan correlate.Item
	deliver atomic.Pointer[func(correlate.Item)]
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once

	mu      sync.Mutex
	downTil time.Time
	backoff time.Duration
	ps      *redis.PubSub // the subscription in force: closed by Close, as a read on it does not see the context end

	up, watching                                  atomic.Bool
	keys                                          atomic.Int64
	published, delivered, found, dropped, errored atomic.Uint64
}

// Bounds of a link.
const (
	queueLen   = 1 << 16 // items waiting to be written
	writeBatch = 256
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// Open makes a link for one target and starts its goroutines; it does
// not wait for the store (a store down at start is one down later).
func Open(o Options) (*Link, error) {
	ro, err := options(o.URL)
	if err != nil {
		return nil, err
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("store: no secret")
	}
	mac := hmac.New(sha256.New, o.Secret)
	mac.Write([]byte("shadowtap correlate seal"))
	block, _ := aes.NewCipher(mac.Sum(nil)) // 32 bytes: AES-256
	aead, _ := cipher.NewGCM(block)
	hk := hmac.New(sha256.New, o.Secret)
	hk.Write([]byte("shadowtap correlate key"))
	l := &Link{client: redis.NewClient(ro), prefix: o.prefix() + o.Target, hashKey: hk.Sum(nil), aead: aead,
		log: o.limiter(), queue: make(chan correlate.Item, queueLen)}
	rand.Read(l.self[:])
	l.up.Store(true)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(2)
	go l.write()
	go l.subscribe()
	return l, nil
}

// Key is the keyed hash of a production value.
func (l *Link) Key(entity, value string) correlate.FleetKey {
	m := hmac.New(sha256.New, l.hashKey)
	m.Write([]byte(entity))
	m.Write([]byte{0})
	m.Write([]byte(value))
	var k correlate.FleetKey
	copy(k[:], m.Sum(nil))
	return k
}

// Publish queues it for the writer; a full queue drops it.
func (l *Link) Publish(it correlate.Item) {
	select {
	case l.queue <- it:
	default:
		l.dropped.Add(1)
	}
}

// Watch sets the callback of what other handlers publish.
func (l *Link) Watch(deliver func(correlate.Item)) { l.deliver.Store(&deliver) }

// Stats returns the link's counts.
func (l *Link) Stats() correlate.FleetStats {
	return correlate.FleetStats{Up: l.up.Load(), Watching: l.watching.Load(), Published: l.published.Load(), Delivered: l.delivered.Load(), Found: l.found.Load(),
		Dropped: l.dropped.Load(), Errors: l.errored.Load(), Keys: l.keys.Load()}
}

// Close stops the goroutines and the client.
func (l *Link) Close() {
	l.once.Do(func() {
		l.cancel()
		l.mu.Lock()
		if l.ps != nil {
			l.ps.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
		l.client.Close()
	})
}

// down reports whether the store is being left alone after a failure.
func (l *Link) down() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.downTil)
}

// failed notes a failed operation: counted, warned of at most once a
// minute, and the store left alone for the next backoff.
func (l *Link) failed(op string, err error) {
	if l.ctx.Err() != nil {
		return // closing
	}
	l.errored.Add(1)
	l.up.Store(false)
	l.mu.Lock()
	l.backoff = min(max(2*l.backoff, minBackoff), maxBackoff)
	l.downTil = time.Now().Add(l.backoff)
	b := l.backoff
	l.mu.Unlock()
	l.log.Warn("store_"+op, "correlation store failing: each handler goes on with what it learned itself", "store", l.prefix, "op", op,
		"err", err, "retry_in", b)
}

func (l *Link) ok() {
	if l.up.Load() {
		return
	}
	l.up.Store(true)
	l.mu.Lock()
	l.backoff, l.downTil = 0, time.Time{}
	l.mu.Unlock()
}

func (l *Link) itemKey(k correlate.FleetKey) string {
	return l.prefix + ":p:" + hex.EncodeToString(k[:])
}

// write drains the queue into the store, a batch per round trip.
func (l *Link) write() {
	defer l.wg.Done()
	batch := make([]correlate.Item, 0, writeBatch)
	size := time.NewTicker(sizeEvery)
	defer size.Stop()
	l.measure()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-size.C:
			l.measure()
			continue
		case it := <-l.queue:
			batch = append(batch[:0], it)
		}
	fill:
		for len(batch) < writeBatch {
			select {
			case it := <-l.queue:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		if l.down() {
			l.dropped.Add(uint64(len(batch)))
			continue
		}
		ctx, cancel := context.WithTimeout(l.ctx, time.Second)
		_, err := l.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, it := range batch {
				v := l.seal(it)
				p.Set(ctx, l.itemKey(it.Key), v, it.TTL)
				p.Publish(ctx, l.prefix, append(append(l.self[:], it.Key[:]...), v...))
			}
			return nil
		})
		cancel()
		if err != nil {
			l.dropped.Add(uint64(len(batch)))
			l.failed("write", err)
			continue
		}
		l.ok()
		l.published.Add(uint64(len(batch)))
	}
}

// sizeEvery is how often the store's size is read, for /metrics.
const sizeEvery = 30 * time.Second

// measure reads how many keys the store holds (all of its database: the
// handlers' pairs and values awaited, each with its TTL).
func (l *Link) measure() {
	if l.down() {
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Second)
	defer cancel()
	if n, err := l.client.DBSize(ctx).Result(); err == nil {
		l.keys.Store(n)
	}
}

// Lookup reads the items of keys, in one round trip.
func (l *Link) Lookup(ctx context.Context, keys []correlate.FleetKey) []correlate.Item {
	if len(keys) == 0 || l.down() {
		return nil
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = l.itemKey(k)
	}
	vals, err := l.client.MGet(ctx, names...).Result()
	if err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			l.failed("lookup", err)
		}
		return nil
	}
	l.ok()
	var out []correlate.Item
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		if it, ok := l.open(keys[i], []byte(s)); ok {
			out = append(out, it)
		}
	}
	l.found.Add(uint64(len(out)))
	return out
}

// subscribe delivers what the other handlers publish, remaking the
// subscription when the store comes back.
func (l *Link) subscribe() {
	defer l.wg.Done()
	for l.ctx.Err() == nil {
		l.mu.Lock()
		if l.ctx.Err() != nil {
			l.mu.Unlock()
			return
		}
		ps := l.client.Subscribe(l.ctx, l.prefix)
		l.ps = ps
		l.mu.Unlock()
		if _, err := ps.Receive(l.ctx); err != nil { // the confirmation: the store is there
			ps.Close()
			l.failed("subscribe", err)
			l.sleep()
			continue
		}
		l.watching.Store(true)
		l.ok() // the store is back: writes and lookups resume at once
		for {
			msg, err := ps.ReceiveMessage(l.ctx)
			if err != nil {
				l.watching.Store(false)
				ps.Close()
				l.failed("subscribe", err)
				l.sleep()
				break
			}
			b := []byte(msg.Payload)
			if len(b) < len(l.self)+len(correlate.FleetKey{}) || string(b[:len(l.self)]) == string(l.self[:]) {
				continue // damaged, or this link's own
			}
			b = b[len(l.self):]
			var k correlate.FleetKey
			copy(k[:], b)
			it, ok := l.open(k, b[len(k):])
			if d := l.deliver.Load(); ok && d != nil {
				l.delivered.Add(1)
				(*d)(it)
			}
		}
	}
}

// sleep waits out the backoff, or the close.
func (l *Link) sleep() {
	l.mu.Lock()
	d := time.Until(l.downTil)
	l.mu.Unlock()
	t := time.NewTimer(max(d, minBackoff))
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.ctx.Done():
	}
}

// seal writes an item's state, and its entity and target value sealed
// under the key (the item's key is the additional data: a value moved to
// another key does not open).
func (l *Link) seal(it correlate.Item) []byte {
	nonce := make([]byte, l.aead.NonceSize())
	rand.Read(nonce)
	plain := append(append([]byte(it.Entity), 0), it.Target...)
	out := append([]byte{byte(it.State)}, nonce...)
	return l.aead.Seal(out, nonce, plain, it.Key[:])
}

func (l *Link) open(k correlate.FleetKey, b []byte) (correlate.Item, bool) {
	n := l.aead.NonceSize()
	if len(b) < 1+n {
		return correlate.Item{}, false
	}
	plain, err := l.aead.Open(nil, b[1:1+n], b[1+n:], k[:])
	if err != nil {
		return correlate.Item{}, false // another secret's, or damaged
	}
	entity, target, _ := strings.Cut(string(plain), "\x00")
	it := correlate.Item{Key: k, State: correlate.ItemState(b[0]), Entity: entity, Target: target}
	switch it.State {
	case correlate.Awaited, correlate.Paired, correlate.Unpaired:
		return it, true
	}
	return correlate.Item{}, false
}
