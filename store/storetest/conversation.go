package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/tenancy"
)

// conversationTests are the chat cases of the suite (see Run); they need
// Stores.Conversations.
var conversationTests = []struct {
	name string
	fn   func(t *testing.T, s Stores)
}{
	{"ConversationCreateFind", testConversationCreateFind},
	{"ConversationIsolation", testConversationIsolation},
	{"ConversationListOrder", testConversationListOrder},
	{"ConversationAddMessages", testConversationAddMessages},
	{"ConversationDelete", testConversationDelete},
	{"ConversationOwnerRules", testConversationOwnerRules},
	{"ConversationConcurrentAdds", testConversationConcurrentAdds},
}

// owners is one tenant with two members and a key issued to no user, and
// a member of another tenant.
type owners struct {
	tenant         *tenancy.Tenant
	alice, bob     chat.Owner
	key            chat.Owner
	other          chat.Owner // of another tenant
	otherTenantKey *tenancy.APIKey
}

func newOwners(t *testing.T, s Stores) owners {
	t.Helper()
	tn := mustTenant(t, s, uniq("chat"))
	alice := mustUser(t, s, tn.ID, "alice", tenancy.RoleMember)
	bob := mustUser(t, s, tn.ID, "bob", tenancy.RoleMember)
	key := mustKey(t, s, tn.ID, 0, "service")
	tn2 := mustTenant(t, s, uniq("chat-other"))
	eve := mustUser(t, s, tn2.ID, "alice", tenancy.RoleMember) // same name, other tenant
	k2 := mustKey(t, s, tn2.ID, 0, "other service")
	return owners{
		tenant: tn,
		alice:  chat.Owner{TenantID: tn.ID, UserID: alice.ID},
		bob:    chat.Owner{TenantID: tn.ID, UserID: bob.ID},
		key:    chat.Owner{TenantID: tn.ID, KeyID: key.ID},
		other:  chat.Owner{TenantID: tn2.ID, UserID: eve.ID},

		otherTenantKey: k2,
	}
}

// turn returns a user message and its answer at time at.
func turn(at time.Time, question, answer string) []chat.Message {
	return []chat.Message{
		{Role: chat.RoleUser, Content: question, CreatedAt: at},
		{Role: chat.RoleAssistant, Content: answer, Model: "gpt-4o", TokensUsed: 42, Cost: 1_250,
			LatencyMS: 812, RequestID: uniq("req"), CreatedAt: at.Add(time.Millisecond)},
	}
}

func mustConversation(t *testing.T, s Stores, o chat.Owner, at time.Time, title string, msgs ...chat.Message) *chat.Conversation {
	t.Helper()
	c := &chat.Conversation{Owner: o, Title: title, CreatedAt: at}
	if err := s.Conversations.CreateConversation(ctx(t), c, msgs); err != nil {
		t.Fatalf("CreateConversation(%q) = %v", title, err)
	}
	return c
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("%s = %v, want tenancy.ErrNotFound", what, err)
	}
}

func testConversationCreateFind(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now()
	msgs := append([]chat.Message{{Role: chat.RoleSystem, Content: "Be brief.", CreatedAt: at}},
		turn(at.Add(time.Second), "Hello, ünïcode ✓ and 'quotes' \"too\"", "Hi!\nHow can I help?")...)
	c := mustConversation(t, s, o.alice, at, "Hello", msgs...)
	if c.ID == 0 || c.MessageCount != 3 || c.Model != "gpt-4o" || !c.UpdatedAt.Equal(at.Add(time.Second+time.Millisecond)) {
		t.Errorf("CreateConversation set %+v, want an id, 3 messages, model gpt-4o, updated at the answer", c)
	}
	for i, m := range msgs {
		if m.ID == 0 || m.ConversationID != c.ID {
			t.Errorf("message %d: id %d conversation %d, want an id and %d", i, m.ID, m.ConversationID, c.ID)
		}
	}

	got, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.alice}, c.ID)
	if err != nil {
		t.Fatalf("FindConversation = %v", err)
	}
	sameJSON(t, "FindConversation", got, c)
	if got.TenantID != o.tenant.ID || got.UserID != o.alice.UserID || got.KeyID != 0 {
		t.Errorf("owner = %+v, want %+v", got.Owner, o.alice)
	}

	all, err := s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.alice}, c.ID, 0)
	if err != nil {
		t.Fatalf("FindMessages = %v", err)
	}
	sameJSON(t, "FindMessages", all, msgs)
	for i := range all {
		if all[i].ConversationID != c.ID {
			t.Errorf("message %d ConversationID = %d, want %d", i, all[i].ConversationID, c.ID)
		}
	}
	last2, err := s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.alice}, c.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "FindMessages(last 2)", last2, msgs[1:])

	// A conversation owned by a key.
	k := mustConversation(t, s, o.key, at, "by key", turn(at, "q", "a")...)
	got, err = s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.key}, k.ID)
	if err != nil {
		t.Fatalf("FindConversation(key's) = %v", err)
	}
	if got.UserID != 0 || got.KeyID != o.key.KeyID {
		t.Errorf("key's conversation owner = %+v, want key %d", got.Owner, o.key.KeyID)
	}

	// An empty conversation has no messages (and is found).
	e := mustConversation(t, s, o.alice, at, "empty")
	if e.MessageCount != 0 || !e.UpdatedAt.Equal(at) {
		t.Errorf("empty conversation = %+v, want 0 messages, updated at creation", e)
	}
	none, err := s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.alice}, e.ID, 0)
	if err != nil || len(none) != 0 {
		t.Errorf("FindMessages(empty) = %v, %v; want none, nil", none, err)
	}
	wantNotFound(t, "FindConversation(missing)", func() error {
		_, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.alice}, 1<<40)
		return err
	}())
}

func testConversationIsolation(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now()
	ca := mustConversation(t, s, o.alice, at, "alice's", turn(at, "a?", "a!")...)
	cb := mustConversation(t, s, o.bob, at.Add(time.Second), "bob's", turn(at, "b?", "b!")...)
	ck := mustConversation(t, s, o.key, at.Add(2*time.Second), "key's", turn(at, "k?", "k!")...)
	co := mustConversation(t, s, o.other, at.Add(3*time.Second), "other tenant's", turn(at, "o?", "o!")...)

	type view struct {
		name  string
		scope chat.Scope
		sees  []*chat.Conversation // newest first
	}
	views := []view{
		{"alice", chat.Scope{Owner: o.alice}, []*chat.Conversation{ca}},
		{"bob", chat.Scope{Owner: o.bob}, []*chat.Conversation{cb}},
		{"key", chat.Scope{Owner: o.key}, []*chat.Conversation{ck}},
		{"tenant admin", chat.Scope{Owner: o.alice, All: true}, []*chat.Conversation{ck, cb, ca}},
		{"other tenant", chat.Scope{Owner: o.other}, []*chat.Conversation{co}},
		{"other tenant admin", chat.Scope{Owner: o.other, All: true}, []*chat.Conversation{co}},
		// same user id, wrong tenant: nothing
		{"alice's id in the other tenant", chat.Scope{Owner: chat.Owner{TenantID: o.other.TenantID, UserID: o.alice.UserID}}, nil},
		// a key of the other tenant: nothing of this tenant's
		{"other tenant's key", chat.Scope{Owner: chat.Owner{TenantID: o.other.TenantID, KeyID: o.otherTenantKey.ID}}, nil},
		// a scope that names no owner: nothing
		{"no owner", chat.Scope{Owner: chat.Owner{TenantID: o.tenant.ID}}, nil},
	}
	every := []*chat.Conversation{ca, cb, ck, co}
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			list, total, err := s.Conversations.FindConversations(ctx(t), v.scope, 0, 0)
			if err != nil {
				t.Fatalf("FindConversations = %v", err)
			}
			if total != len(v.sees) {
				t.Errorf("total = %d, want %d", total, len(v.sees))
			}
			var ids, want []int64
			for _, c := range list {
				ids = append(ids, c.ID)
			}
			for _, c := range v.sees {
				want = append(want, c.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Errorf("FindConversations ids = %v, want %v", ids, want)
			}
			for _, c := range every {
				visible := false
				for _, w := range v.sees {
					visible = visible || w.ID == c.ID
				}
				_, err := s.Conversations.FindConversation(ctx(t), v.scope, c.ID)
				_, merr := s.Conversations.FindMessages(ctx(t), v.scope, c.ID, 0)
				if visible {
					if err != nil || merr != nil {
						t.Errorf("%q: FindConversation = %v, FindMessages = %v; want it visible", c.Title, err, merr)
					}
					continue
				}
				wantNotFound(t, fmt.Sprintf("FindConversation(%q)", c.Title), err)
				wantNotFound(t, fmt.Sprintf("FindMessages(%q)", c.Title), merr)
				wantNotFound(t, fmt.Sprintf("AddMessages(%q)", c.Title),
					s.Conversations.AddMessages(ctx(t), v.scope, c.ID, turn(now(), "intruder", "no")))
				wantNotFound(t, fmt.Sprintf("DeleteConversation(%q)", c.Title),
					s.Conversations.DeleteConversation(ctx(t), v.scope, c.ID))
			}
		})
	}
	// Nothing was changed by the refused calls.
	for _, c := range every {
		got, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: c.Owner}, c.ID)
		if err != nil {
			t.Fatalf("FindConversation(%q) by its owner = %v", c.Title, err)
		}
		if got.MessageCount != 2 {
			t.Errorf("%q has %d messages after refused calls, want 2", c.Title, got.MessageCount)
		}
	}
}

func testConversationListOrder(t *testing.T, s Stores) {
	o := newOwners(t, s)
	base := now().Add(-time.Hour)
	var cs []*chat.Conversation
	for i := range 5 {
		at := base.Add(time.Duration(i) * time.Minute)
		cs = append(cs, mustConversation(t, s, o.alice, at, fmt.Sprintf("c%d", i), turn(at, "q", "a")...))
	}
	// Two with the same time: the newer id first.
	same := mustConversation(t, s, o.alice, base, "same time as c0", turn(base, "q", "a")...)
	ids := func(list []*chat.Conversation) []int64 {
		var out []int64
		for _, c := range list {
			out = append(out, c.ID)
		}
		return out
	}
	list, total, err := s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{cs[4].ID, cs[3].ID, cs[2].ID, cs[1].ID, same.ID, cs[0].ID}
	if total != 6 || fmt.Sprint(ids(list)) != fmt.Sprint(want) {
		t.Errorf("FindConversations = %v (total %d), want %v (6)", ids(list), total, want)
	}
	// A new message moves a conversation to the front.
	if err := s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.alice}, cs[1].ID, turn(now(), "again", "yes")); err != nil {
		t.Fatal(err)
	}
	list, _, err = s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); fmt.Sprint(got) != fmt.Sprint([]int64{cs[1].ID, cs[4].ID}) {
		t.Errorf("first page after a new message = %v, want [%d %d]", got, cs[1].ID, cs[4].ID)
	}
	list, total, err = s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice}, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); total != 6 || fmt.Sprint(got) != fmt.Sprint([]int64{same.ID, cs[0].ID}) {
		t.Errorf("last page = %v (total %d), want [%d %d] (6)", got, total, same.ID, cs[0].ID)
	}
	list, total, err = s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice}, 10, 100)
	if err != nil || len(list) != 0 || total != 6 {
		t.Errorf("page past the end = %v, %d, %v; want none, 6, nil", ids(list), total, err)
	}
}

func testConversationAddMessages(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now().Add(-time.Minute)
	c := mustConversation(t, s, o.key, at, "k", turn(at, "one", "1")...)
	later := at.Add(30 * time.Second)
	next := turn(later, "two", "2")
	next[1].Model = "claude-sonnet-4-5"
	if err := s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.key}, c.ID, next); err != nil {
		t.Fatalf("AddMessages = %v", err)
	}
	for i, m := range next {
		if m.ID == 0 || m.ConversationID != c.ID {
			t.Errorf("added message %d: id %d conversation %d", i, m.ID, m.ConversationID)
		}
	}
	got, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.key}, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.MessageCount != 4 || got.Model != "claude-sonnet-4-5" || !got.UpdatedAt.Equal(later.Add(time.Millisecond)) ||
		!got.CreatedAt.Equal(at) || got.Title != "k" {
		t.Errorf("after AddMessages: %+v; want 4 messages, the new model, updated at the answer, created and titled as before", got)
	}
	// Messages without a model (the user's) leave the model; an older
	// time leaves updated_at.
	if err := s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.key}, c.ID,
		[]chat.Message{{Role: chat.RoleUser, Content: "late", CreatedAt: at}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.key}, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.MessageCount != 5 || got.Model != "claude-sonnet-4-5" || !got.UpdatedAt.Equal(later.Add(time.Millisecond)) {
		t.Errorf("after a user message: %+v; want 5 messages, model and updated_at unchanged", got)
	}
	msgs, err := s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.key}, c.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var contents []string
	for _, m := range msgs {
		contents = append(contents, m.Content)
	}
	if fmt.Sprint(contents) != "[one 1 two 2 late]" {
		t.Errorf("messages = %q, want insertion order", contents)
	}
	// A bad role is refused, and nothing of the batch is kept.
	err = s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.key}, c.ID, []chat.Message{
		{Role: chat.RoleUser, Content: "fine", CreatedAt: now()},
		{Role: "tool", Content: "not a stored role", CreatedAt: now()},
	})
	if err == nil {
		t.Error("AddMessages(role tool) = nil, want an error")
	}
	got, _ = s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.key}, c.ID)
	if got.MessageCount != 5 {
		t.Errorf("after a refused batch: %d messages, want 5", got.MessageCount)
	}
}

func testConversationDelete(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now()
	c := mustConversation(t, s, o.alice, at, "doomed", turn(at, "q", "a")...)
	keep := mustConversation(t, s, o.alice, at, "kept", turn(at, "q", "a")...)
	if err := s.Conversations.DeleteConversation(ctx(t), chat.Scope{Owner: o.alice}, c.ID); err != nil {
		t.Fatalf("DeleteConversation = %v", err)
	}
	_, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.alice}, c.ID)
	wantNotFound(t, "FindConversation(deleted)", err)
	_, err = s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.alice, All: true}, c.ID, 0)
	wantNotFound(t, "FindMessages(deleted)", err)
	wantNotFound(t, "DeleteConversation(deleted)", s.Conversations.DeleteConversation(ctx(t), chat.Scope{Owner: o.alice}, c.ID))
	wantNotFound(t, "AddMessages(deleted)", s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.alice}, c.ID, turn(at, "q", "a")))
	// A tenant admin's scope deletes another member's conversation.
	if err := s.Conversations.DeleteConversation(ctx(t), chat.Scope{Owner: o.bob, All: true}, keep.ID); err != nil {
		t.Errorf("DeleteConversation(all of the tenant) = %v", err)
	}
	list, total, err := s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice}, 0, 0)
	if err != nil || total != 0 || len(list) != 0 {
		t.Errorf("after deletes: %d conversations (%v), want none", total, err)
	}
}

func testConversationOwnerRules(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now()
	bad := []struct {
		name  string
		owner chat.Owner
	}{
		{"no owner", chat.Owner{TenantID: o.tenant.ID}},
		{"user and key", chat.Owner{TenantID: o.tenant.ID, UserID: o.alice.UserID, KeyID: o.key.KeyID}},
		{"user of another tenant", chat.Owner{TenantID: o.tenant.ID, UserID: o.other.UserID}},
		{"missing tenant", chat.Owner{TenantID: 1 << 40, UserID: o.alice.UserID}},
		{"missing key", chat.Owner{TenantID: o.tenant.ID, KeyID: 1 << 40}},
	}
	for _, tc := range bad {
		c := &chat.Conversation{Owner: tc.owner, Title: tc.name, CreatedAt: at}
		if err := s.Conversations.CreateConversation(ctx(t), c, turn(at, "q", "a")); err == nil {
			t.Errorf("CreateConversation(%s) = nil, want an error", tc.name)
		}
	}
	// Nothing half-made: a refused message leaves no conversation behind.
	c := &chat.Conversation{Owner: o.alice, Title: "half", CreatedAt: at}
	if err := s.Conversations.CreateConversation(ctx(t), c, []chat.Message{{Role: "bot", Content: "x", CreatedAt: at}}); err == nil {
		t.Error("CreateConversation(role bot) = nil, want an error")
	}
	_, total, err := s.Conversations.FindConversations(ctx(t), chat.Scope{Owner: o.alice, All: true}, 0, 0)
	if err != nil || total != 0 {
		t.Errorf("after refused creates: %d conversations (%v), want none", total, err)
	}
}

func testConversationConcurrentAdds(t *testing.T, s Stores) {
	o := newOwners(t, s)
	at := now()
	c := mustConversation(t, s, o.bob, at, "busy")
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Conversations.AddMessages(ctx(t), chat.Scope{Owner: o.bob}, c.ID,
				turn(at.Add(time.Duration(i)*time.Second), fmt.Sprint("q", i), fmt.Sprint("a", i))); err != nil {
				t.Errorf("AddMessages #%d = %v", i, err)
			}
		})
	}
	wg.Wait()
	got, err := s.Conversations.FindConversation(ctx(t), chat.Scope{Owner: o.bob}, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := at.Add((n-1)*time.Second + time.Millisecond)
	if got.MessageCount != 2*n || !got.UpdatedAt.Equal(want) {
		t.Errorf("after %d concurrent turns: %d messages, updated %v; want %d, %v", n, got.MessageCount, got.UpdatedAt, 2*n, want)
	}
	msgs, err := s.Conversations.FindMessages(ctx(t), chat.Scope{Owner: o.bob}, c.ID, 0)
	if err != nil || len(msgs) != 2*n {
		t.Fatalf("FindMessages = %d messages, %v; want %d", len(msgs), err, 2*n)
	}
	// Each turn's two messages are adjacent: a turn is one transaction.
	for i := 0; i < len(msgs); i += 2 {
		q, a := msgs[i].Content, msgs[i+1].Content
		if q[0] != 'q' || a[0] != 'a' || q[1:] != a[1:] {
			t.Errorf("messages %d, %d = %q, %q: not one turn", i, i+1, q, a)
		}
	}
}
