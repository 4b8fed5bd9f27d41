package gateway

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
			"Incorrect API key provided: [redacted]. You can find your API key at https://platform.openai.com/account/api-keys."},
		{"Incorrect API key provided: sk-proj-abc***", "Incorrect API key provided: [redacted]"},
		{"invalid x-api-key sk-ant-api03-AbCdEf_123-xyz", "invalid x-api-key [redacted]"},
		{"Rate limit reached for gpt-4o in organization org-XXXX on tokens per min (TPM): Limit 30000, Used 29937, Requested 385.",
			"Rate limit reached for gpt-4o in organization [redacted] on tokens per min (TPM): Limit 30000, Used 29937, Requested 385."},
		{"Project proj_Q1w2E3r4T5y6 does not have access to model gpt-4o", "Project [redacted] does not have access to model gpt-4o"},
		{"account acct_1AbCdEf2 is suspended", "account [redacted] is suspended"},
		{"(Please include the request ID req_540c6eaab7f4556b2baa22bcba915d51 in your email.)", "(Please include the request ID [redacted] in your email.)"},
		{"(Please include the request ID 500d9fff2057e4af93a280f67002c342 in your message.)", "(Please include the request ID [redacted] in your message.)"},
		{"User: arn:aws:iam::123456789012:user/ops is not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/x",
			"User: [redacted] is not authorized to perform: bedrock:InvokeModel on resource: [redacted]"},
		{"The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE", "The security token included in the request is invalid: [redacted]"},
		{"account 123456789012 denied", "account [redacted] denied"},
		{"organization 5a0b2c1d-3e4f-4a5b-8c7d-9e0f1a2b3c4d has no credit", "organization [redacted] has no credit"},
		{"sent Authorization: Bearer abc.def-ghi_jkl", "sent Authorization: [redacted]"},
		{"key AIzaSyA-1234567890abcdefghijkl rejected", "key [redacted] rejected"},
		{"token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig rejected", "token [redacted] rejected"},
		// what is not a secret stays
		{"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
			"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."},
		{"messages.0.content: an org-wide policy forbids this (proj-based limits, task-specific)", "messages.0.content: an org-wide policy forbids this (proj-based limits, task-specific)"},
		{"max_tokens: Field required", "max_tokens: Field required"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSafeToken(t *testing.T) {
	for in, want := range map[string]string{
		"invalid_request_error":   "invalid_request_error",
		"context_length_exceeded": "context_length_exceeded",
		"messages[0].content":     "messages[0].content",
		"tokens":                  "tokens",
		"":                        "",
		"org-AbC123xyz":           "",
		"has space":               "",
		"sk-proj-abc":             "",
		strings.Repeat("a", 65):   "",
	} {
		if got := safeToken(in); got != want {
			t.Errorf("safeToken(%q) = %q, want %q", in, got, want)
		}
	}
}
