// Package redisbus carries tenancy invalidations between the gateway's
// replicas over Redis pub/sub: it is the tenancy.Bus used when REDIS_URL is
// set. A key revoked, a tenant changed or disabled on one replica is dropped
// from every replica's KeyCache within a round trip to Redis.
//
// Pub/sub delivers at most once: a message sent while a replica is
// reconnecting is lost. So after every reconnection the subscriber drops
// everything (tenancy.Invalidation{All: true}); the cache TTL bounds any
// remaining staleness.
package redisbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/mtai-dev/mtai/tenancy"
)

// DefaultChannel is the pub/sub channel replicas share unless configured.
const DefaultChannel = "mtai:tenancy:invalidate"

// Bus publishes and receives invalidations on one Redis channel. It is safe
// for concurrent use; the client stays owned by the caller (Bus never closes
// it).
type Bus struct {
	client  redis.UniversalClient
	channel string
}

var _ tenancy.Bus = (*Bus)(nil)

// New returns a Bus on channel (DefaultChannel when empty) through client.
func New(client redis.UniversalClient, channel string) *Bus {
	if channel == "" {
		channel = DefaultChannel
	}
	return &Bus{client: client, channel: channel}
}

// message is the wire form of a tenancy.Invalidation.
type message struct {
	KeyHash  string `json:"key_hash,omitempty"`
	TenantID int64  `json:"tenant_id,omitempty"`
	All      bool   `json:"all,omitempty"`
}

// Publish implements tenancy.Bus.
func (b *Bus) Publish(ctx context.Context, inv tenancy.Invalidation) error {
	payload, err := json.Marshal(message{KeyHash: inv.KeyHash, TenantID: inv.TenantID, All: inv.All})
	if err != nil {
		return fmt.Errorf("redisbus: %w", err)
	}
	if err := b.client.Publish(ctx, b.channel, payload).Err(); err != nil {
		return fmt.Errorf("redisbus: publish: %w", err)
	}
	return nil
}

// Subscribe implements tenancy.Bus: it returns once Redis confirmed the
// subscription. fn runs on one goroutine, one message at a time; malformed
// messages are skipped. Close the returned Closer to unsubscribe and wait
// for that goroutine.
func (b *Bus) Subscribe(ctx context.Context, fn func(tenancy.Invalidation)) (io.Closer, error) {
	ps := b.client.Subscribe(ctx, b.channel)
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		ps.Close()
		return nil, fmt.Errorf("redisbus: subscribe to %s: %w", b.channel, err)
	}
	ch := ps.ChannelWithSubscriptions()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch { // closed by ps.Close
			switch m := m.(type) {
			case *redis.Subscription:
				// Subscribed again after a reconnection: messages may have
				// been lost meanwhile.
				if m.Kind == "subscribe" {
					fn(tenancy.Invalidation{All: true})
				}
			case *redis.Message:
				var msg message
				if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil {
					continue
				}
				fn(tenancy.Invalidation{KeyHash: msg.KeyHash, TenantID: msg.TenantID, All: msg.All})
			}
		}
	}()
	return &subscription{ps: ps, done: done}, nil
}

// subscription owns the receiving goroutine of one Subscribe.
type subscription struct {
	ps   *redis.PubSub
	done chan struct{}
}

// Close unsubscribes and waits for the receiving goroutine to end.
func (s *subscription) Close() error {
	err := s.ps.Close()
	<-s.done
	if errors.Is(err, redis.ErrClosed) {
		err = nil
	}
	return err
}
