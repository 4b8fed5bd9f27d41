package gateway

import (
	"regexp"
	"strings"
)

// Redaction of what upstreams write to the gateway's account before any of
// it reaches a tenant (upstreamAPIError). An upstream's message is written
// to the operator: it can name the operator's OpenAI organisation or
// project, an AWS account (in an ARN), quote the prefix of the operator's
// key, or carry request ids of the operator's account.

// secretLike matches what redact replaces, longest forms first:
//   - keys: sk-… (OpenAI, Anthropic and most others, masked or not),
//     AWS access key ids, Google API keys, JWTs and "Bearer <token>";
//   - AWS ARNs (they carry the account id) and bare 12-digit account ids;
//   - OpenAI organisation, project and account ids (org-…, proj_…, acct_…),
//     request ids (req_…), UUIDs (Anthropic organisations, AWS request
//     ids) and long hex strings (request ids, Azure keys).
//
// Compiled once; a *regexp.Regexp is safe for concurrent use.
var secretLike = regexp.MustCompile(`(?i:bearer)\s+[A-Za-z0-9._~+/=*\-]{8,}` +
	`|\bsk-[A-Za-z0-9_*\-]+` +
	`|\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{12,}` +
	`|\bAIza[A-Za-z0-9_\-]{20,}` +
	`|\beyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]+){0,2}` +
	`|\barn:aws[a-z\-]*:[^\s"'<>(),;]*` +
	`|\b(?:org|proj|acct|req)[-_][A-Za-z0-9_\-]{3,}` +
	`|\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b` +
	`|\b[0-9A-Fa-f]{24,}\b` +
	`|\b[0-9]{12}\b`)

// redacted stands in for what redact removes.
const redacted = "[redacted]"

// redact returns msg with every key-, account- and id-like string replaced
// by [redacted]. Ordinary words that merely start like an id ("org-wide",
// "proj-based": all lower-case letters) are kept.
func redact(msg string) string {
	if !secretLike.MatchString(msg) {
		return msg
	}
	return secretLike.ReplaceAllStringFunc(msg, func(m string) string {
		if i := strings.IndexAny(m, "-_"); i > 0 && i <= 4 && isIDPrefix(m[:i]) && isLowerWord(m[i+1:]) {
			return m
		}
		return redacted
	})
}

func isIDPrefix(s string) bool {
	switch s {
	case "org", "proj", "acct", "req":
		return true
	}
	return false
}

// isLowerWord reports whether s is a plain lower-case word (a–z and
// hyphens), which ids never are.
func isLowerWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '-' {
			return false
		}
	}
	return s != ""
}

// safeToken returns s when it is a short identifier that can reach a
// tenant as an error's type, code or param ("invalid_request_error",
// "context_length_exceeded", "messages[0].content"), and "" otherwise.
func safeToken(s string) string {
	if len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == '[', c == ']':
		default:
			return ""
		}
	}
	if secretLike.MatchString(s) {
		return ""
	}
	return s
}
