// Package chat owns the stored conversations of the platform API
// (/api/v1/chat): conversations, their messages, who owns them and who may
// see them (Owner, Scope), the persistence contract the SQL adapters
// implement (Store, in store/sqlite and store/postgres), and the windowing
// of a conversation's history into a model's context window, counted with
// OpenAI's tokenizers offline (window.go).
//
// It does not talk to models: the gateway builds the chat request from what
// this package gives it and sends it through the same routing, limits and
// metering as /v1/chat/completions.
package chat

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mtai-dev/mtai/tenancy"
)

// Role is the author of a message, as OpenAI names them.
type Role string

// The roles a stored message may have.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Valid reports whether r is one of the roles above.
func (r Role) Valid() bool {
	return r == RoleSystem || r == RoleUser || r == RoleAssistant
}

// Owner is who a conversation belongs to: a user of a tenant, or, for an
// API key issued to no user, the key itself. The zero value owns nothing.
type Owner struct {
	// TenantID is the tenant's store id; never 0 for a stored conversation.
	TenantID int64 `json:"-"`
	// UserID is the owning user; 0 when the key owns the conversation.
	UserID int64 `json:"user_id,omitempty"`
	// KeyID is the owning API key when UserID is 0, else 0 (a user's
	// conversations stay theirs whatever key or token they use).
	KeyID int64 `json:"key_id,omitempty"`
}

// OwnerOf returns the owner of the conversations p creates: p's user, else
// p's key. ok is false for a principal that can own nothing (a key from
// static configuration, which has no tenant or key id in the store).
func OwnerOf(p *tenancy.Principal) (o Owner, ok bool) {
	if p == nil || p.TenantID == 0 {
		return Owner{}, false
	}
	if p.UserID != 0 {
		return Owner{TenantID: p.TenantID, UserID: p.UserID}, true
	}
	if p.KeyID != 0 {
		return Owner{TenantID: p.TenantID, KeyID: p.KeyID}, true
	}
	return Owner{}, false
}

// Scope is which conversations a store call may see: those of Owner, or,
// with All, every conversation of Owner.TenantID. A conversation outside the
// scope does not exist for the call (tenancy.ErrNotFound).
type Scope struct {
	Owner
	// All widens the scope to the whole tenant (tenant admins).
	All bool
}

// Conversation is a stored chat: its metadata, without messages.
type Conversation struct {
	ID int64 `json:"id"`
	Owner
	// Title is the start of the first user message (see Title).
	Title string `json:"title"`
	// Model is the model of the latest answer.
	Model string `json:"model"`
	// MessageCount is the number of stored messages.
	MessageCount int       `json:"message_count"`
	CreatedAt    time.Time `json:"created_at"`
	// UpdatedAt is the time of the latest message.
	UpdatedAt time.Time `json:"updated_at"`
}

// Message is one stored message. The metered fields are set on the
// assistant's answers only.
type Message struct {
	ID             int64  `json:"id"`
	ConversationID int64  `json:"-"`
	Role           Role   `json:"role"`
	Content        string `json:"content"`
	// Model is the routed model that wrote an answer.
	Model string `json:"model,omitempty"`
	// TokensUsed is the whole turn's tokens (prompt and answer).
	TokensUsed int64 `json:"tokens_used,omitempty"`
	// Cost of the turn.
	Cost tenancy.MicroUSD `json:"cost_usd,omitempty"`
	// LatencyMS of the turn, in milliseconds.
	LatencyMS int64 `json:"latency_ms,omitempty"`
	// RequestID of the request that produced the answer.
	RequestID string    `json:"request_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Store persists conversations. Every call that names a conversation takes
// a Scope and treats a conversation outside it as missing; misses are
// errors wrapping tenancy.ErrNotFound. Implementations are safe for
// concurrent use.
type Store interface {
	// CreateConversation inserts c with its first messages in one
	// transaction, setting c.ID, c.MessageCount, c.UpdatedAt (the latest
	// message's time, else c.CreatedAt) and c.Model (the latest message
	// with a model, when c.Model is empty), and each message's ID and
	// ConversationID.
	CreateConversation(ctx context.Context, c *Conversation, msgs []Message) error
	// FindConversation returns conversation id.
	FindConversation(ctx context.Context, s Scope, id int64) (*Conversation, error)
	// FindConversations returns a page of the scope's conversations, most
	// recently updated first (ties: newest id first), and their number in
	// all. limit 0 means no limit.
	FindConversations(ctx context.Context, s Scope, limit, offset int) ([]*Conversation, int, error)
	// FindMessages returns the last `last` messages of conversation id
	// (0: all of them), oldest first.
	FindMessages(ctx context.Context, s Scope, id int64, last int) ([]Message, error)
	// AddMessages appends msgs to conversation id in one transaction,
	// setting their IDs, and moves the conversation's UpdatedAt to the
	// latest message's time, its Model to the latest message's model (when
	// one has a model) and its MessageCount on.
	AddMessages(ctx context.Context, s Scope, id int64, msgs []Message) error
	// DeleteConversation deletes conversation id and its messages.
	DeleteConversation(ctx context.Context, s Scope, id int64) error
}

// titleRunes is the length of a conversation title, in characters.
const titleRunes = 80

// Title returns a conversation's title from its first user message: the
// message on one line (runs of white space become one space, other
// unprintable characters go), cut at titleRunes characters with an
// ellipsis.
func Title(message string) string {
	t := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, message)
	t = strings.Join(strings.Fields(t), " ")
	if utf8.RuneCountInString(t) <= titleRunes {
		return t
	}
	r := []rune(t)
	return strings.TrimRight(string(r[:titleRunes-1]), " ") + "…"
}
