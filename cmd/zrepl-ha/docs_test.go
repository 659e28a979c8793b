package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// The docs must not drift from the commands: every `zrepl-ha ...` command
// line written in README.md or docs/*.md, in a code block or an inline code
// span, must name commands that exist in newApp()'s tree and flags those
// commands (or their parents) have. And every config in docs/quickstart.md
// must pass `zrepl-ha config check`.

// docCommand is one zrepl-ha command line found in a doc.
type docCommand struct {
	where string // file:line
	line  string
}

var (
	fenceRE      = regexp.MustCompile("^\\s*(```+|~~~+)\\s*([A-Za-z0-9_+-]*)")
	inlineCodeRE = regexp.MustCompile("`([^`]+)`")
	// A shell prompt ("$ ") or sudo is not part of the command; a line
	// starting with "#" is a comment.
	promptRE = regexp.MustCompile(`^\$\s+|^sudo\s+`)
)

// docFiles are the files the test reads, relative to this package.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	if len(files) < 2 {
		t.Fatal("no docs found")
	}
	return files
}

// skipFence: code blocks that are not shell (configs, JSON, Go, unit files,
// program output) are not searched for command lines.
var skipFence = map[string]bool{"yaml": true, "yml": true, "json": true, "go": true, "ini": true, "systemd": true, "text": true, "diff": true}

// commandsIn finds zrepl-ha command lines in markdown: the lines of shell
// code blocks, and inline code spans, whose first word (per pipeline
// segment) is zrepl-ha or a path ending in /zrepl-ha.
func commandsIn(name string, data []byte) []docCommand {
	var out []docCommand
	lines := strings.Split(string(data), "\n")
	inFence, skip := false, false
	fence := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		where := fmt.Sprintf("%s:%d", name, i+1)
		if m := fenceRE.FindStringSubmatch(l); m != nil {
			switch {
			case !inFence:
				inFence, fence, skip = true, m[1], skipFence[strings.ToLower(m[2])]
				continue
			case strings.HasPrefix(strings.TrimSpace(l), fence) && m[2] == "":
				inFence = false
				continue
			}
		}
		if inFence {
			if skip {
				continue
			}
			// Join continuation lines.
			for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
				i++
				l = strings.TrimSuffix(l, "\\") + " " + lines[i]
			}
			for _, seg := range segments(l) {
				out = append(out, docCommand{where, seg})
			}
			continue
		}
		for _, m := range inlineCodeRE.FindAllStringSubmatch(l, -1) {
			for _, seg := range segments(m[1]) {
				out = append(out, docCommand{where, seg})
			}
		}
	}
	return out
}

// segments splits a shell line at pipes and command separators and returns
// the segments that run zrepl-ha, from zrepl-ha on.
func segments(line string) []string {
	var out []string
	for _, seg := range regexp.MustCompile(`\|\||&&|[|;]|\$\(`).Split(line, -1) {
		seg = strings.TrimSpace(seg)
		seg = promptRE.ReplaceAllString(seg, "")
		first, _, _ := strings.Cut(seg, " ")
		if first == "zrepl-ha" || strings.HasSuffix(first, "/zrepl-ha") {
			out = append(out, seg)
		}
	}
	return out
}

// checkCommand walks one command line through the command tree.
func checkCommand(root *cli.Command, line string) error {
	words := strings.Fields(line)[1:]
	cur := root
	path := []*cli.Command{root}
	for i := 0; i < len(words); i++ {
		w := words[i]
		// The end of the command: a redirection or a comment.
		if strings.HasPrefix(w, "#") || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || strings.HasPrefix(w, "<") {
			break
		}
		// Optional parts written [--json] or [--ignore-peer]: check what is inside.
		w = strings.Trim(w, "[]")
		if w == "" || w == "..." {
			continue
		}
		if strings.HasPrefix(w, "-") && w != "-" {
			name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if name == "help" || name == "h" {
				continue
			}
			f := findFlag(path, name)
			if f == nil {
				return fmt.Errorf("%q: %q has no flag --%s", line, cur.FullName(), name)
			}
			if tv, ok := f.(interface{ TakesValue() bool }); ok && tv.TakesValue() && !hasValue {
				i++ // the flag's value
			}
			continue
		}
		if sub := findSub(cur, w); sub != nil {
			cur = sub
			path = append(path, sub)
			continue
		}
		if len(cur.Commands) > 0 && w != "help" {
			return fmt.Errorf("%q: %q has no command %q", line, cur.FullName(), w)
		}
		// A positional argument of a leaf command (FILE, tank/data, ...).
	}
	return nil
}

func findSub(c *cli.Command, name string) *cli.Command {
	for _, s := range c.Commands {
		if s.Name == name || slices.Contains(s.Aliases, name) {
			return s
		}
	}
	return nil
}

// findFlag looks for a flag on the command and then on its parents: the
// root's --config is given before or after the subcommand.
func findFlag(path []*cli.Command, name string) cli.Flag {
	for i := len(path) - 1; i >= 0; i-- {
		for _, f := range path[i].Flags {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
	}
	return nil
}

func TestDocsCommandsExist(t *testing.T) {
	root := newApp()
	seen := 0
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(file, "../../")
		for _, c := range commandsIn(name, data) {
			seen++
			if err := checkCommand(root, c.line); err != nil {
				t.Errorf("%s: %v", c.where, err)
			}
		}
	}
	// The admin's docs mention dozens of command lines; finding few means
	// the parser broke, not that the docs are clean.
	if seen < 50 {
		t.Errorf("found only %d zrepl-ha command lines in the docs; the doc parser is broken", seen)
	}
}

// Every command of the CLI is documented somewhere in the admin docs.
func TestDocsMentionEveryCommand(t *testing.T) {
	var all strings.Builder
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(file, "../../")
		for _, c := range commandsIn(name, data) {
			all.WriteString(c.line + "\n")
		}
	}
	text := all.String()
	_ = newApp().Walk(func(c *cli.Command) error {
		if c.Root() == c {
			return nil
		}
		// "zrepl-ha config check", "zrepl-ha zfs holds", ... with any global
		// flags in between.
		words := strings.Fields(c.FullName())
		pat := `zrepl-ha(\s+-\S+(\s+[^-\s]\S*)?)*\s+` + strings.Join(words[1:], `\s+`) + `(\s|$)`
		if !regexp.MustCompile(`(?m)` + pat).MatchString(text) {
			t.Errorf("%q is not shown as a command line in README.md or docs/*.md", c.FullName())
		}
		return nil
	})
}

// The checker itself: it must refuse what does not exist.
func TestDocsCommandChecker(t *testing.T) {
	root := newApp()
	good := []string{
		"zrepl-ha status --json",
		"zrepl-ha --config /etc/zrepl-ha/beta.yaml promote --dry-run",
		"bin/zrepl-ha failover --force [--ignore-peer] [--yes]",
		"zrepl-ha events -n 20 --since 24h",
		"zrepl-ha replicate --once --from tank/data --to usb/backup/data --snapshot --peer-name usb",
		"zrepl-ha -c /etc/zrepl-ha/alpha.yaml config check",
		"zrepl-ha zfs holds backup/data",
	}
	for _, l := range good {
		if err := checkCommand(root, l); err != nil {
			t.Errorf("refused a real command: %v", err)
		}
	}
	bad := []string{
		"zrepl-ha status --follow",
		"zrepl-ha rejoin",
		"zrepl-ha replicate --continuous",
		"zrepl-ha config lint x.yaml",
		"zrepl-ha failover --force --no-confirm",
	}
	for _, l := range bad {
		if err := checkCommand(root, l); err == nil {
			t.Errorf("accepted %q", l)
		}
	}
	md := "text `zrepl-ha status` and `systemctl restart zrepl-ha` and `zrepl-ha:epoch`\n" +
		"```sh\nzrepl-ha drill --json | jq .failover_ready\n# zrepl-ha nothing\n```\n" +
		"```yaml\nzrepl-ha nope\n```\n"
	got := commandsIn("x.md", []byte(md))
	var lines []string
	for _, c := range got {
		lines = append(lines, c.line)
	}
	want := []string{"zrepl-ha status", "zrepl-ha drill --json"}
	if !slices.Equal(lines, want) {
		t.Errorf("commandsIn = %q, want %q", lines, want)
	}
}

// The quick start's configs are real: each YAML block that is a node
// config passes config check.
func TestDocsQuickstartConfigsValid(t *testing.T) {
	data, err := os.ReadFile("../../docs/quickstart.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	n := 0
	for i, b := range blocks {
		if !strings.Contains(b[1], "\nnode:") && !strings.HasPrefix(b[1], "node:") {
			continue
		}
		n++
		if _, err := config.Parse(fmt.Sprintf("quickstart.md yaml block %d", i+1), []byte(b[1])); err != nil {
			t.Errorf("docs/quickstart.md yaml block %d: %v", i+1, err)
		}
	}
	if n < 2 {
		t.Errorf("found %d node configs in docs/quickstart.md, want one per node", n)
	}
}
