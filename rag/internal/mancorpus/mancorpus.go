// Package mancorpus turns the system's section-1 manual pages (gzipped
// roff, man and mdoc macros) into a retrieval test set: each page's text
// without its NAME section is a document, and the one-line summary of its
// NAME section (written by the page's authors) is a query whose right
// answer is that page. For tests and benchmarks only.
package mancorpus

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Dir is where Debian installs section-1 pages.
const Dir = "/usr/share/man/man1"

// Page is one manual page.
type Page struct {
	// File is the page's file name, e.g. "ls.1.gz".
	File string
	// Summary is the NAME line's description ("list directory contents").
	Summary string
	// Text is the page as Markdown-ish text (sections as "## NAME"
	// headings), without its NAME section.
	Text string
}

// Load reads up to n pages of dir (all when n ≤ 0), chosen evenly over the
// sorted file names so that the sample is the same on every run. Pages
// that are redirects (.so) or have no summary of at least 3 words are left
// out, and so are pages whose text or summary an earlier page had.
func Load(dir string, n int) ([]Page, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".gz") && e.Type().IsRegular() {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	var pages []Page
	seenText := map[[32]byte]bool{}
	summaries := map[string]bool{}
	// Read more than n files: some are left out.
	step := 1.0
	if n > 0 && len(files) > n {
		step = float64(len(files)) / float64(n) / 1.25
	}
	for f := 0.0; int(f) < len(files); f += step {
		name := files[int(f)]
		p, ok := readPage(filepath.Join(dir, name))
		if !ok {
			continue
		}
		p.File = name
		h := sha256.Sum256([]byte(p.Text))
		if seenText[h] {
			continue
		}
		seenText[h] = true
		// several versions of a tool (llvm-14, llvm-15, ...) share their
		// summary: keep the first, or the query would have two answers
		if summaries[strings.ToLower(p.Summary)] {
			continue
		}
		summaries[strings.ToLower(p.Summary)] = true
		pages = append(pages, p)
	}
	out := pages
	if n > 0 && len(out) > n {
		// thin evenly to n
		thin := make([]Page, 0, n)
		for i := range n {
			thin = append(thin, out[i*len(out)/n])
		}
		out = thin
	}
	return out, nil
}

func readPage(path string) (Page, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Page{}, false
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return Page{}, false
	}
	var (
		b       strings.Builder
		section string
		name    strings.Builder
	)
	sc := bufio.NewScanner(z)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	emit := func(s string) {
		if section == "NAME" {
			name.WriteString(s)
			name.WriteByte(' ')
			return
		}
		b.WriteString(s)
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, ".so ") {
			return Page{}, false
		}
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			macro, args := splitMacro(line[1:])
			switch macro {
			case `\"`, "", "TH", "Dd", "Dt", "Os", "de", "ds", "nr", "ig", "if", "ie", "el", "ft", "in", "ta", "ad", "na", "nh", "hy", "ne", "ti", "ll", "rs", "RS", "RE", "IX", "Vb", "Ve", "UC", "PD", "DT", "ns", "cs", "tr", "so", "mk", "rm", "am", "Id", "Bl", "El", "Bd", "Ed":
				if macro == "Bl" || macro == "Bd" || macro == "RS" {
					emit("\n\n")
				}
				continue
			case "SH", "Sh":
				section = strings.ToUpper(strings.Trim(text(strings.Join(args, " ")), `" `))
				if section != "NAME" {
					emit("\n\n## " + section + "\n\n")
				}
				continue
			case "SS", "Ss":
				emit("\n\n### " + text(strings.Join(args, " ")) + "\n\n")
				continue
			case "PP", "LP", "P", "Pp", "sp", "TP", "HP", "It":
				emit("\n\n")
				if macro == "It" && len(args) > 0 {
					emit(mdocText(args) + " ")
				}
				continue
			case "IP":
				emit("\n\n")
				if len(args) > 0 {
					emit(text(strings.Trim(args[0], `"`)) + " ")
				}
				continue
			case "br":
				emit("\n")
				continue
			case "Nm":
				emit(mdocText(args) + " ")
				continue
			case "Nd":
				emit(`\- ` + mdocText(args) + " ")
				continue
			case "B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB":
				parts := make([]string, len(args))
				for i, a := range args {
					parts[i] = strings.Trim(a, `"`)
				}
				sep := ""
				if macro == "B" || macro == "I" || macro == "SM" || macro == "SB" {
					sep = " "
				}
				emit(text(strings.Join(parts, sep)) + " ")
				continue
			}
			if len(macro) == 2 && macro[0] >= 'A' && macro[0] <= 'Z' {
				emit(mdocText(args) + " ")
			}
			continue
		}
		if section == "NAME" {
			name.WriteString(line)
			name.WriteByte(' ')
			continue
		}
		b.WriteString(text(line))
		b.WriteByte('\n')
	}
	summary := nameSummary(name.String())
	if len(strings.Fields(summary)) < 3 {
		return Page{}, false
	}
	t := strings.TrimSpace(blankLines.ReplaceAllString(b.String(), "\n\n"))
	if len(t) < 200 {
		return Page{}, false
	}
	return Page{Summary: summary, Text: t}, true
}

var blankLines = regexp.MustCompile(`\n[ \t]*\n(\s*\n)*`)

// nameSummary returns the description after "\-" (or " - ") in a NAME line.
func nameSummary(s string) string {
	for _, sep := range []string{`\-`, " - ", `\(em`, " -- "} {
		if i := strings.Index(s, sep); i >= 0 {
			return strings.Join(strings.Fields(text(s[i+len(sep):])), " ")
		}
	}
	return ""
}

// splitMacro splits a control line into its macro name and arguments
// (quoted arguments kept together, with their quotes).
func splitMacro(s string) (string, []string) {
	s = strings.TrimLeft(s, " \t")
	if strings.HasPrefix(s, `\"`) {
		return `\"`, nil
	}
	var fields []string
	for s != "" {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				fields = append(fields, s)
				break
			}
			fields = append(fields, s[:end+2])
			s = s[end+2:]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			fields = append(fields, s)
			break
		}
		fields = append(fields, s[:end])
		s = s[end:]
	}
	if len(fields) == 0 {
		return "", nil
	}
	return fields[0], fields[1:]
}

// mdocText renders mdoc arguments, dropping the inline macro names
// (Fl, Ar, Op, ...): "Fl v" → "-v".
func mdocText(args []string) string {
	var out []string
	flag := false
	for _, a := range args {
		a = strings.Trim(a, `"`)
		if len(a) == 2 && a[0] >= 'A' && a[0] <= 'Z' && a[1] >= 'a' && a[1] <= 'z' {
			flag = a == "Fl"
			continue
		}
		if flag {
			a = "-" + a
			flag = false
		}
		out = append(out, a)
	}
	return text(strings.Join(out, " "))
}

var (
	fontEsc    = regexp.MustCompile(`\\f(\[[^\]]*\]|\(..|.)`)
	sizeEsc    = regexp.MustCompile(`\\s[-+]?\d+`)
	specialEsc = regexp.MustCompile(`\\(\(..|\[[^\]]*\]|\*\(..|\*\[[^\]]*\]|\*.)`)
	otherEsc   = regexp.MustCompile(`\\[&%|^c/,:{}]`)
)

// text removes roff escapes from s.
func text(s string) string {
	if i := strings.Index(s, `\"`); i >= 0 {
		s = s[:i]
	}
	s = fontEsc.ReplaceAllString(s, "")
	s = sizeEsc.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, `\-`, "-")
	s = strings.ReplaceAll(s, `\e`, `\`)
	s = strings.ReplaceAll(s, `\ `, " ")
	s = strings.ReplaceAll(s, `\~`, " ")
	s = specialEsc.ReplaceAllStringFunc(s, func(m string) string {
		switch m {
		case `\(em`, `\[em]`, `\(en`, `\[en]`:
			return "-"
		case `\(aq`, `\[aq]`, `\(cq`, `\(oq`:
			return "'"
		case `\(dq`, `\[dq]`, `\(lq`, `\(rq`:
			return `"`
		}
		return " "
	})
	s = otherEsc.ReplaceAllString(s, "")
	return s
}

// Passages cuts the pages' texts into passages of about words words, at
// paragraph breaks where possible, until n passages (cycling over the pages
// again, each pass with a different cut, when they hold fewer).
func Passages(pages []Page, words, n int) []string {
	var out []string
	for pass := 0; len(out) < n && len(pages) > 0; pass++ {
		before := len(out)
		for _, p := range pages {
			f := strings.Fields(p.Text)
			if pass > 0 {
				shift := (pass * 7) % max(1, min(len(f), words))
				f = f[shift:]
			}
			for i := 0; i < len(f) && len(out) < n; i += words {
				out = append(out, strings.Join(f[i:min(i+words, len(f))], " "))
			}
			if len(out) >= n {
				break
			}
		}
		if len(out) == before {
			break
		}
	}
	return out
}
