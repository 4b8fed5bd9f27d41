package rag

import (
	"strconv"
	"strings"
)

// contextPreamble tells the model how to use the sources.
const contextPreamble = "Answer using the numbered sources below, retrieved from the tenant's documents. " +
	"Cite the sources you use as [1], [2], ... If they do not contain the answer, say so rather than guess."

// BuildContext renders sources as the text of a system message:
// a short instruction, then each source as "[n] name › heading" and its
// text. It returns "" for no sources (inject nothing then).
func BuildContext(sources []Source) string {
	if len(sources) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(contextPreamble)
	for i, s := range sources {
		n := s.N
		if n == 0 {
			n = i + 1
		}
		b.WriteString("\n\n[")
		b.WriteString(strconv.Itoa(n))
		b.WriteString("] ")
		b.WriteString(s.DocumentName)
		if s.Heading != "" {
			b.WriteString(" › ")
			b.WriteString(s.Heading)
		}
		b.WriteByte('\n')
		b.WriteString(strings.TrimSpace(s.Text))
	}
	return b.String()
}
