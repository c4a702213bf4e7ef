package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"

	"github.com/berth/berth/internal/lazyre"
)

// templateFuncs are the functions Docker offers in --format templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"join":  strings.Join,
	"split": strings.Split,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"title": func(s string) string { return cases.Title(language.Und).String(s) },
	"pad": func(s string, l, r int) string {
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"println": fmt.Sprintln,
}

func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("").Funcs(templateFuncs).Option("missingkey=zero").Parse(format)
	if err != nil {
		return nil, &flagError{cmd: "", err: fmt.Errorf("template parsing error: %v", err)}
	}
	return t, nil
}

var fieldRef = lazyre.New(`\{\{\s*\.(\w+)\s*\}\}`)

// render prints rows with format: "table …" gives a header and aligned
// columns, "json" one JSON object per line, anything else one template
// expansion per row.
func render(out io.Writer, format string, rows []any, headers map[string]string) error {
	if format == "json" {
		for _, r := range rows {
			v := any(r)
			if j, ok := r.(interface{ JSON() any }); ok {
				v = j.JSON()
			}
			b, _ := json.Marshal(v)
			fmt.Fprintln(out, string(b))
		}
		return nil
	}
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		table, format = true, strings.TrimSpace(rest)
	}
	format = strings.ReplaceAll(format, `\t`, "\t")
	format = strings.ReplaceAll(format, `\n`, "\n")
	t, err := parseTemplate(format)
	if err != nil {
		return err
	}
	w := out
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
		w = tw
		header := fieldRef.ReplaceAllStringFunc(format, func(m string) string {
			name := fieldRef.FindStringSubmatch(m)[1]
			if h, ok := headers[name]; ok {
				return h
			}
			return strings.ToUpper(splitCamel(name))
		})
		fmt.Fprintln(w, header)
	}
	for _, r := range rows {
		var b bytes.Buffer
		if err := t.Execute(&b, r); err != nil {
			return fmt.Errorf("template: %v", err)
		}
		fmt.Fprintln(w, b.String())
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func splitCamel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && !(s[i-1] >= 'A' && s[i-1] <= 'Z') {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// renderEach expands a template once per inspected object.
func renderEach(out io.Writer, format string, objs []any) error {
	t, err := parseTemplate(format)
	if err != nil {
		return err
	}
	for _, o := range objs {
		var b bytes.Buffer
		if err := t.Execute(&b, o); err != nil {
			return fmt.Errorf("template: %v", err)
		}
		fmt.Fprintln(out, b.String())
	}
	return nil
}

// confirm asks a yes/no question on the terminal.
func confirm(g *globals, q string) bool {
	fmt.Fprint(g.out, q)
	s, _ := bufio.NewReader(g.in).ReadString('\n')
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "y" || s == "yes"
}

func copyOut(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }
