package rag

import (
	"bytes"
	"fmt"
	"net/http"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/ledongthuc/pdf"
	"golang.org/x/net/html"
)

// The content types a document may have.
const (
	TypeText     = "text/plain"
	TypeMarkdown = "text/markdown"
	TypeHTML     = "text/html"
	TypePDF      = "application/pdf"
)

// Sniff decides a file's type from its bytes, helped by its name and the
// type the client declared (either may be empty): the bytes win where they
// are conclusive (PDF, HTML, binary). Markdown cannot be told from plain
// text by its bytes alone: a .md/.markdown name, a declared text/markdown, or
// a text whose lines start with "# " make it Markdown. Anything that is not
// text, Markdown, HTML or PDF is ErrUnsupportedType.
func Sniff(name, declared string, data []byte) (string, error) {
	if len(data) == 0 {
		return "", ErrEmpty
	}
	declared = strings.ToLower(strings.TrimSpace(strings.SplitN(declared, ";", 2)[0]))
	ext := strings.ToLower(path.Ext(name))
	if bytes.HasPrefix(data, []byte("%PDF-")) {
		return TypePDF, nil
	}
	if declared == TypePDF || ext == ".pdf" {
		return "", fmt.Errorf("%w: %q is declared a PDF but does not start with %%PDF-", ErrUnsupportedType, name)
	}
	sniffed := http.DetectContentType(data)
	switch {
	case strings.HasPrefix(sniffed, "text/html"):
		return TypeHTML, nil
	case strings.HasPrefix(sniffed, "text/plain"), strings.HasPrefix(sniffed, "text/xml"):
		// text; DetectContentType calls any UTF-8 text without NUL "text/plain"
	default:
		return "", fmt.Errorf("%w: %q looks like %s; send plain text, Markdown, HTML or PDF", ErrUnsupportedType, name, sniffed)
	}
	if !utf8.Valid(data) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8 text", ErrUnsupportedType, name)
	}
	switch {
	case declared == TypeHTML || ext == ".html" || ext == ".htm":
		return TypeHTML, nil
	case declared == TypeMarkdown || declared == "text/x-markdown" || ext == ".md" || ext == ".markdown":
		return TypeMarkdown, nil
	case looksMarkdown(data):
		return TypeMarkdown, nil
	}
	return TypeText, nil
}

// looksMarkdown reports whether a line of the first 4 KiB is an ATX heading.
func looksMarkdown(data []byte) bool {
	head := data[:min(len(data), 4096)]
	for line := range bytes.Lines(head) {
		if headingLevel(string(line)) > 0 {
			return true
		}
	}
	return false
}

// Extract returns the text of data, of type contentType (from Sniff).
// Headings come out as Markdown ATX headings ("## Title") and paragraphs are
// separated by blank lines, which the chunker respects.
func Extract(contentType string, data []byte) (string, error) {
	var (
		text string
		err  error
	)
	switch contentType {
	case TypeText, TypeMarkdown:
		text = string(data)
	case TypeHTML:
		text, err = extractHTML(data)
	case TypePDF:
		text, err = extractPDF(data)
	default:
		return "", fmt.Errorf("%w: %s", ErrUnsupportedType, contentType)
	}
	if err != nil {
		return "", err
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	if strings.TrimSpace(text) == "" {
		return "", ErrEmpty
	}
	return strings.ToValidUTF8(text, "\uFFFD"), nil
}

// extractPDF reads the text layer of every page. A PDF without one (a scan)
// has no text: ErrEmpty.
func extractPDF(data []byte) (text string, err error) {
	defer func() {
		// the PDF reader panics on some malformed files
		if v := recover(); v != nil {
			text, err = "", fmt.Errorf("%w: the PDF could not be read (%v)", ErrUnsupportedType, v)
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", fmt.Errorf("%w: the PDF could not be read: %v", ErrUnsupportedType, err)
	}
	var b strings.Builder
	for i := 1; i <= r.NumPage(); i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		// fonts are not shared between pages: two pages may give one name
		// to different fonts
		s, err := p.GetPlainText(nil)
		if err != nil {
			return "", fmt.Errorf("%w: page %d of the PDF could not be read: %v", ErrUnsupportedType, i, err)
		}
		b.WriteString(strings.TrimSpace(s))
		b.WriteString("\n\n")
	}
	return b.String(), nil
}

// extractHTML returns the visible text of an HTML page: headings as ATX
// headings, block elements as paragraphs; script, style and the head
// (except the title) are dropped.
func extractHTML(data []byte) (string, error) {
	z := html.NewTokenizer(bytes.NewReader(data))
	var (
		b       strings.Builder
		skip    int // depth inside elements whose text is not shown
		pre     int
		heading int
		title   bool
	)
	para := func() {
		s := b.String()
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			if strings.HasSuffix(s, "\n") {
				b.WriteByte('\n')
			} else {
				b.WriteString("\n\n")
			}
		}
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String(), nil // io.EOF; the tokenizer recovers from bad markup
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			nameB, _ := z.TagName()
			name := string(nameB)
			start := tt == html.StartTagToken
			switch name {
			case "script", "style", "noscript", "template", "svg", "head":
				if tt == html.SelfClosingTagToken {
					continue
				}
				if start {
					skip++
				} else if skip > 0 {
					skip--
				}
			case "title":
				title = start
				if !start {
					para()
				}
			case "h1", "h2", "h3", "h4", "h5", "h6":
				para()
				if start {
					heading = int(name[1] - '0')
					b.WriteString(strings.Repeat("#", heading) + " ")
				} else {
					heading = 0
				}
			case "pre":
				para()
				if start {
					pre++
				} else if pre > 0 {
					pre--
				}
			case "br":
				b.WriteByte('\n')
			case "li":
				if start {
					para()
					b.WriteString("- ")
				}
			case "td", "th":
				if start {
					b.WriteByte(' ')
				}
			case "p", "div", "section", "article", "main", "header", "footer", "aside", "nav",
				"ul", "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "hr", "figure", "figcaption",
				"form", "fieldset", "address", "details", "summary", "body":
				para()
			}
		case html.TextToken:
			if skip > 0 && !title {
				continue
			}
			t := string(z.Text())
			if pre > 0 {
				b.WriteString(t)
				continue
			}
			t = strings.Join(strings.Fields(t), " ")
			if t == "" {
				continue
			}
			if heading > 0 || title {
				if title {
					b.WriteString("# ")
				}
				b.WriteString(t)
				continue
			}
			s := b.String()
			if s != "" && !strings.HasSuffix(s, " ") && !strings.HasSuffix(s, "\n") {
				b.WriteByte(' ')
			}
			b.WriteString(t)
		}
	}
}
