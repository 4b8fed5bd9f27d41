package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/tenancy"
)

var _ chat.Store = (*DB)(nil)

const conversationColumns = `c.id, c.tenant_id, c.user_id, c.key_id, c.title, c.model, c.message_count, c.created_at, c.updated_at`

const messageColumns = `m.id, m.conversation_id, m.role, m.content, m.model, m.tokens_used, m.cost_micro_usd, m.latency_ms, m.request_id, m.created_at`

// scopeWhere returns the condition on conversations AS c that limits a
// query to s, and its arguments. A scope that names no owner matches
// nothing.
func scopeWhere(s chat.Scope) (string, []any) {
	switch {
	case s.All:
		return `c.tenant_id = ?`, []any{s.TenantID}
	case s.UserID != 0:
		return `c.tenant_id = ? AND c.user_id = ?`, []any{s.TenantID, s.UserID}
	default:
		return `c.tenant_id = ? AND c.user_id IS NULL AND c.key_id = ?`, []any{s.TenantID, s.KeyID}
	}
}

func scanConversation(s scanner) (*chat.Conversation, error) {
	var (
		c                chat.Conversation
		userID, keyID    sql.NullInt64
		created, updated string
	)
	if err := s.Scan(&c.ID, &c.TenantID, &userID, &keyID, &c.Title, &c.Model, &c.MessageCount, &created, &updated); err != nil {
		return nil, err
	}
	c.UserID, c.KeyID = userID.Int64, keyID.Int64
	var err error
	if c.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if c.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &c, nil
}

func scanMessage(s scanner) (chat.Message, error) {
	var (
		m       chat.Message
		role    string
		created string
	)
	if err := s.Scan(&m.ID, &m.ConversationID, &role, &m.Content, &m.Model, &m.TokensUsed, &m.Cost, &m.LatencyMS,
		&m.RequestID, &created); err != nil {
		return m, err
	}
	m.Role = chat.Role(role)
	var err error
	m.CreatedAt, err = parseTime(created)
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

// insertMessages inserts msgs into conversation id, setting their IDs.
func insertMessages(ctx context.Context, tx *sql.Tx, id int64, msgs []chat.Message) error {
	stmt, err := tx.PrepareContext(ctx, `
		INSERT INTO conversation_messages
			(conversation_id, role, content, model, tokens_used, cost_micro_usd, latency_ms, request_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING id`)
	if err != nil {
		return mapErr("add messages", err)
	}
	defer stmt.Close()
	for i := range msgs {
		m := &msgs[i]
		if err := stmt.QueryRowContext(ctx, id, string(m.Role), m.Content, m.Model, m.TokensUsed, int64(m.Cost),
			m.LatencyMS, m.RequestID, formatTime(m.CreatedAt)).Scan(&m.ID); err != nil {
			return mapErr("add messages", err)
		}
		m.ConversationID = id
	}
	return nil
}

// CreateConversation implements chat.Store.
func (db *DB) CreateConversation(ctx context.Context, c *chat.Conversation, msgs []chat.Message) error {
	updated, model := latest(c.CreatedAt, msgs)
	if c.Model == "" {
		c.Model = model
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			INSERT INTO conversations (tenant_id, user_id, key_id, title, model, message_count, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			RETURNING id`,
			c.TenantID, nullID(c.UserID), nullID(c.KeyID), c.Title, c.Model, len(msgs),
			formatTime(c.CreatedAt), formatTime(updated),
		).Scan(&c.ID)
		if err != nil {
			return mapErr("create conversation", err)
		}
		if err := insertMessages(ctx, tx, c.ID, msgs); err != nil {
			return err
		}
		c.MessageCount, c.UpdatedAt = len(msgs), updated
		return nil
	})
}

// FindConversation implements chat.Store.
func (db *DB) FindConversation(ctx context.Context, s chat.Scope, id int64) (*chat.Conversation, error) {
	where, args := scopeWhere(s)
	c, err := scanConversation(db.read.QueryRowContext(ctx,
		`SELECT `+conversationColumns+` FROM conversations AS c WHERE c.id = ? AND `+where, append([]any{id}, args...)...))
	return c, mapErr(fmt.Sprintf("conversation %d", id), err)
}

// FindConversations implements chat.Store.
func (db *DB) FindConversations(ctx context.Context, s chat.Scope, limit, offset int) ([]*chat.Conversation, int, error) {
	where, args := scopeWhere(s)
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM conversations AS c WHERE `+where, args...).Scan(&n); err != nil {
		return nil, 0, mapErr("count conversations", err)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+conversationColumns+` FROM conversations AS c WHERE `+where+`
		ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?`, append(args, sqlLimit(limit), offset)...)
	if err != nil {
		return nil, 0, mapErr("find conversations", err)
	}
	defer rows.Close()
	cs := []*chat.Conversation{}
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			return nil, 0, mapErr("find conversations", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr("find conversations", err)
	}
	return cs, n, nil
}

// FindMessages implements chat.Store.
func (db *DB) FindMessages(ctx context.Context, s chat.Scope, id int64, last int) ([]chat.Message, error) {
	where, args := scopeWhere(s)
	rows, err := db.read.QueryContext(ctx, `SELECT `+messageColumns+`
		FROM conversation_messages AS m JOIN conversations AS c ON c.id = m.conversation_id
		WHERE c.id = ? AND `+where+` ORDER BY m.id DESC LIMIT ?`, append(append([]any{id}, args...), sqlLimit(last))...)
	if err != nil {
		return nil, mapErr("find messages", err)
	}
	defer rows.Close()
	msgs := []chat.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, mapErr("find messages", err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
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
	where, args := scopeWhere(s)
	at, model := latest(time.Time{}, msgs)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		// max() of fixed-width UTC text is the later time
		res, err := tx.ExecContext(ctx, `
			UPDATE conversations AS c SET
				message_count = c.message_count + ?,
				updated_at = max(c.updated_at, ?),
				model = CASE WHEN ? = '' THEN c.model ELSE ? END
			WHERE c.id = ? AND `+where,
			append([]any{len(msgs), formatTime(at), model, model, id}, args...)...)
		if err != nil {
			return mapErr(fmt.Sprintf("conversation %d", id), err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("conversation %d: %w", id, tenancy.ErrNotFound)
		}
		return insertMessages(ctx, tx, id, msgs)
	})
}

// DeleteConversation implements chat.Store. Its messages go with it (ON
// DELETE CASCADE).
func (db *DB) DeleteConversation(ctx context.Context, s chat.Scope, id int64) error {
	where, args := scopeWhere(s)
	res, err := db.write.ExecContext(ctx, `DELETE FROM conversations AS c WHERE c.id = ? AND `+where,
		append([]any{id}, args...)...)
	if err != nil {
		return mapErr(fmt.Sprintf("delete conversation %d", id), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("conversation %d: %w", id, tenancy.ErrNotFound)
	}
	return nil
}
