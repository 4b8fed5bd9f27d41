package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/tenancy"
)

var _ chat.Store = (*DB)(nil)

const conversationColumns = `c.id, c.tenant_id, c.user_id, c.key_id, c.title, c.model, c.message_count, c.created_at, c.updated_at`

const messageColumns = `m.id, m.conversation_id, m.role, m.content, m.model, m.tokens_used, m.cost_micro_usd, m.latency_ms, m.request_id, m.created_at`

// scopeWhere returns the condition on conversations AS c that limits a
// query to s, with its parameters numbered from $n, and its arguments. A
// scope that names no owner matches nothing.
func scopeWhere(s chat.Scope, n int) (string, []any) {
	p := func(i int) string { return "$" + strconv.Itoa(n+i) }
	switch {
	case s.All:
		return `c.tenant_id = ` + p(0), []any{s.TenantID}
	case s.UserID != 0:
		return `c.tenant_id = ` + p(0) + ` AND c.user_id = ` + p(1), []any{s.TenantID, s.UserID}
	default:
		return `c.tenant_id = ` + p(0) + ` AND c.user_id IS NULL AND c.key_id = ` + p(1), []any{s.TenantID, s.KeyID}
	}
}

func scanConversation(row pgx.Row) (*chat.Conversation, error) {
	var (
		c             chat.Conversation
		userID, keyID *int64
	)
	if err := row.Scan(&c.ID, &c.TenantID, &userID, &keyID, &c.Title, &c.Model, &c.MessageCount,
		&c.CreatedAt, &c.UpdatedAt); err != nil {
		return nil, err
	}
	if userID != nil {
		c.UserID = *userID
	}
	if keyID != nil {
		c.KeyID = *keyID
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return &c, nil
}

func scanMessage(row pgx.Row) (chat.Message, error) {
	var (
		m    chat.Message
		role string
		cost int64
	)
	err := row.Scan(&m.ID, &m.ConversationID, &role, &m.Content, &m.Model, &m.TokensUsed, &cost, &m.LatencyMS,
		&m.RequestID, &m.CreatedAt)
	m.Role, m.Cost, m.CreatedAt = chat.Role(role), tenancy.MicroUSD(cost), m.CreatedAt.UTC()
	return m, err
}

// latest returns the time of the newest of msgs (at least since) and the
// model of the last message that has one.
func latest(since time.Time, msgs []chat.Message) (time.Time, string) {
	model := ""
	for _, m := range msgs {
		if m.CreatedAt.After(since) {
			since = m.CreatedAt
		}
		if m.Model != "" {
			model = m.Model
		}
	}
	return since, model
}

// insertMessages inserts msgs into conversation id in one round trip,
// setting their IDs.
func insertMessages(ctx context.Context, tx pgx.Tx, id int64, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var b pgx.Batch
	for i := range msgs {
		m := &msgs[i]
		b.Queue(`
			INSERT INTO conversation_messages
				(conversation_id, role, content, model, tokens_used, cost_micro_usd, latency_ms, request_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			RETURNING id`,
			id, string(m.Role), m.Content, m.Model, m.TokensUsed, int64(m.Cost), m.LatencyMS, m.RequestID, m.CreatedAt,
		).QueryRow(func(row pgx.Row) error {
			m.ConversationID = id
			return row.Scan(&m.ID)
		})
	}
	return mapErr("add messages", tx.SendBatch(ctx, &b).Close())
}

// CreateConversation implements chat.Store.
func (db *DB) CreateConversation(ctx context.Context, c *chat.Conversation, msgs []chat.Message) error {
	updated, model := latest(c.CreatedAt, msgs)
	if c.Model == "" {
		c.Model = model
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO conversations (tenant_id, user_id, key_id, title, model, message_count, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			RETURNING id`,
			c.TenantID, nullID(c.UserID), nullID(c.KeyID), c.Title, c.Model, len(msgs), c.CreatedAt, updated,
		).Scan(&c.ID)
		if err != nil {
			return mapErr("create conversation", err)
		}
		if err := insertMessages(ctx, tx, c.ID, msgs); err != nil {
			return err
		}
		c.MessageCount, c.UpdatedAt = len(msgs), updated.UTC()
		return nil
	})
}

// FindConversation implements chat.Store.
func (db *DB) FindConversation(ctx context.Context, s chat.Scope, id int64) (*chat.Conversation, error) {
	where, args := scopeWhere(s, 2)
	c, err := scanConversation(db.pool.QueryRow(ctx,
		`SELECT `+conversationColumns+` FROM conversations AS c WHERE c.id = $1 AND `+where, append([]any{id}, args...)...))
	return c, mapErr(fmt.Sprintf("conversation %d", id), err)
}

// FindConversations implements chat.Store.
func (db *DB) FindConversations(ctx context.Context, s chat.Scope, limit, offset int) ([]*chat.Conversation, int, error) {
	where, args := scopeWhere(s, 1)
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM conversations AS c WHERE `+where, args...).Scan(&n); err != nil {
		return nil, 0, mapErr("count conversations", err)
	}
	k := len(args)
	rows, err := db.pool.Query(ctx, `SELECT `+conversationColumns+` FROM conversations AS c WHERE `+where+`
		ORDER BY c.updated_at DESC, c.id DESC LIMIT $`+strconv.Itoa(k+1)+` OFFSET $`+strconv.Itoa(k+2),
		append(args, sqlLimit(limit), offset)...)
	if err != nil {
		return nil, 0, mapErr("find conversations", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chat.Conversation, error) { return scanConversation(r) })
	if err != nil {
		return nil, 0, mapErr("find conversations", err)
	}
	return cs, n, nil
}

// FindMessages implements chat.Store.
func (db *DB) FindMessages(ctx context.Context, s chat.Scope, id int64, last int) ([]chat.Message, error) {
	where, args := scopeWhere(s, 2)
	rows, err := db.pool.Query(ctx, `SELECT `+messageColumns+`
		FROM conversation_messages AS m JOIN conversations AS c ON c.id = m.conversation_id
		WHERE c.id = $1 AND `+where+` ORDER BY m.id DESC LIMIT $`+strconv.Itoa(len(args)+2),
		append(append([]any{id}, args...), sqlLimit(last))...)
	if err != nil {
		return nil, mapErr("find messages", err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (chat.Message, error) { return scanMessage(r) })
	if err != nil {
		return nil, mapErr("find messages", err)
	}
	if len(msgs) == 0 {
		// none: an empty conversation, or none visible
		if _, err := db.FindConversation(ctx, s, id); err != nil {
			return nil, err
		}
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// AddMessages implements chat.Store.
func (db *DB) AddMessages(ctx context.Context, s chat.Scope, id int64, msgs []chat.Message) error {
	where, args := scopeWhere(s, 5)
	at, model := latest(time.Time{}, msgs)
	return db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE conversations AS c SET
				message_count = c.message_count + $1,
				updated_at = greatest(c.updated_at, $2),
				model = CASE WHEN $3 = '' THEN c.model ELSE $3 END
			WHERE c.id = $4 AND `+where,
			append([]any{len(msgs), at, model, id}, args...)...)
		if err != nil {
			return mapErr(fmt.Sprintf("conversation %d", id), err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("conversation %d: %w", id, tenancy.ErrNotFound)
		}
		return insertMessages(ctx, tx, id, msgs)
	})
}

// DeleteConversation implements chat.Store. Its messages go with it (ON
// DELETE CASCADE).
func (db *DB) DeleteConversation(ctx context.Context, s chat.Scope, id int64) error {
	where, args := scopeWhere(s, 2)
	tag, err := db.pool.Exec(ctx, `DELETE FROM conversations AS c WHERE c.id = $1 AND `+where, append([]any{id}, args...)...)
	if err != nil {
		return mapErr(fmt.Sprintf("delete conversation %d", id), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("conversation %d: %w", id, tenancy.ErrNotFound)
	}
	return nil
}
