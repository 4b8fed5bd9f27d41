package chat_test

import (
	"strings"
	"testing"

	"github.com/mtai-dev/mtai/chat"
)

func TestTitle(t *testing.T) {
	long := strings.Repeat("abcdefghij", 10)
	tests := []struct{ in, want string }{
		{"Hello there", "Hello there"},
		{"  What is\n\tmtai?  ", "What is mtai?"},
		{"bell\a and\x00 nul", "bell and nul"},
		{"", ""},
		{long, long[:79] + "…"},
		{strings.Repeat("é", 80), strings.Repeat("é", 80)},
		{strings.Repeat("é", 81), strings.Repeat("é", 79) + "…"},
		{strings.Repeat("word ", 40), strings.TrimSpace(strings.Repeat("word ", 16)) + "…"},
	}
	for _, tc := range tests {
		if got := chat.Title(tc.in); got != tc.want {
			t.Errorf("Title(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRoleValid(t *testing.T) {
	for _, r := range []chat.Role{chat.RoleSystem, chat.RoleUser, chat.RoleAssistant} {
		if !r.Valid() {
			t.Errorf("%q.Valid() = false", r)
		}
	}
	for _, r := range []chat.Role{"", "tool", "developer", "User"} {
		if r.Valid() {
			t.Errorf("%q.Valid() = true", r)
		}
	}
}
