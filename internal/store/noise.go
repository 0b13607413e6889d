package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shadowtap/shadowtap/internal/ratelog"
)

// NoiseLink shares the comparison's learned noise (compare.FleetNoise):
// each handler's last under shadowtap:{ns}:noise:{handler}, with a TTL,
// so a handler gone is forgotten. It holds field names, value shapes and
// counts: no value. Its calls come from the comparator's sharing
// goroutine, each bounded by a timeout.
type NoiseLink struct {
	client *redis.Client
	prefix string
	self   string
	log    *ratelog.Limiter
}

// Bounds of the noise shared.
const (
	noiseTTL      = 10 * time.Minute
	maxNoisePeers = 64
	noiseTimeout  = 2 * time.Second
)

// OpenNoise makes the comparison's link to the store at o.URL.
func OpenNoise(o Options) (*NoiseLink, error) {
	ro, err := options(o.URL)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	rand.Read(id[:])
	return &NoiseLink{client: redis.NewClient(ro), prefix: o.prefix() + "noise:", self: hex.EncodeToString(id[:]), log: o.limiter()}, nil
}

// Publish puts this handler's noise in place of its last.
func (n *NoiseLink) Publish(state []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), noiseTimeout)
	defer cancel()
	if err := n.client.Set(ctx, n.prefix+n.self, state, noiseTTL).Err(); err != nil {
		n.log.Warn("store_noise", "correlation store failing: the comparison goes on with the noise it learned itself", "err", err)
	}
}

// Fetch returns the other handlers' last noise, at most maxNoisePeers.
func (n *NoiseLink) Fetch() [][]byte {
	ctx, cancel := context.WithTimeout(context.Background(), noiseTimeout)
	defer cancel()
	var keys []string
	iter := n.client.Scan(ctx, 0, n.prefix+"*", 100).Iterator()
	for iter.Next(ctx) && len(keys) < maxNoisePeers {
		if k := iter.Val(); k != n.prefix+n.self {
			keys = append(keys, k)
		}
	}
	if err := iter.Err(); err != nil {
		n.log.Warn("store_noise", "correlation store failing: the comparison goes on with the noise it learned itself", "err", err)
		return nil
	}
	if len(keys) == 0 {
		return nil
	}
	vals, err := n.client.MGet(ctx, keys...).Result()
	if err != nil {
		n.log.Warn("store_noise", "correlation store failing: the comparison goes on with the noise it learned itself", "err", err)
		return nil
	}
	var out [][]byte
	for _, v := range vals {
		if s, ok := v.(string); ok {
			out = append(out, []byte(s))
		}
	}
	return out
}

// Close closes the client.
func (n *NoiseLink) Close() { n.client.Close() }
