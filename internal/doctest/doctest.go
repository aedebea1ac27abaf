// Package doctest extracts the shell blocks of Airlock's Markdown
// documentation so that a test can run them exactly as a reader would
// (internal/doctest's TestDocs runs README.md, docs/*.md and
// docs/runbooks/*.md with a freshly built airlock).
//
// Threat model: none. The input is the repository's own documentation;
// the parser is still strict (unknown directives, unclosed blocks and
// reasonless skips are errors) so that a typo cannot silently stop a block
// from running.
//
// The convention, which docs/packages.md's readers and writers of docs
// follow:
//
//   - A fenced block with no info string, or with sh, bash, shell or console,
//     is a shell block and runs. Output, configuration, file layouts, Go,
//     JSON, TOML, YAML are fenced as ```text, ```go, ```json … and never run.
//   - In a shell block where some line starts with "$ ", only those lines
//     (and their continuation lines, up to the end of the shell command)
//     are commands; the other lines are output shown to the reader, which
//     is not compared (output wording changes; the command's exit status is
//     what the test checks). In a block without "$ " lines every line is
//     part of the script.
//   - <!-- doctest: skip — REASON --> right before a block (blank lines
//     between are allowed) skips it; the reason is required.
//   - <!-- doctest setup: SCRIPT --> runs SCRIPT before the next shell
//     block (prose may come between), in the same shell: the preparation
//     the prose asks the reader to do (tokens, a running server). The
//     visible commands run as shown.
//   - <!-- doctest requires: TOOL... --> anywhere in a file names programs
//     the file's blocks need; when one is missing the file is skipped (or
//     fails, with AIRLOCK_REQUIRE_TOOLS=1).
//
// All the blocks of one file run in order in one bash process (set -euo
// pipefail) in one fresh directory, so a walkthrough's later steps build on
// the earlier ones.
package doctest

import (
	"errors"
	"fmt"
	"strings"
)

// MaxDocSize bounds a documentation file the parser accepts.
const MaxDocSize = 1 << 20

// Block is one fenced code block that is a shell block.
type Block struct {
	Line     int      // line number of the opening fence (1-based)
	Setup    string   // script of a preceding doctest setup comment
	Skip     string   // reason of a preceding doctest skip comment; empty: runs
	Commands []string // the commands, each complete for bash
	CmdLines []int    // line number of each command's first line
}

// Doc is the shell content of one Markdown file.
type Doc struct {
	Blocks   []Block
	Requires []string // programs named by doctest requires comments
}

// shellInfo reports whether a fence info string marks a shell block.
func shellInfo(info string) bool {
	switch strings.ToLower(strings.Fields(info + " x")[0]) {
	case "x", "sh", "bash", "shell", "console":
		return true
	}
	return false
}

// Parse extracts the shell blocks and directives of a Markdown file.
// complete reports whether a piece of shell text is a complete command
// (bash -n accepts it); it decides where a command that spans several
// lines ends.
func Parse(src string, complete func(string) bool) (*Doc, error) {
	if len(src) > MaxDocSize {
		return nil, fmt.Errorf("document is %d bytes, limit is %d (MaxDocSize)", len(src), MaxDocSize)
	}
	lines := strings.Split(src, "\n")
	doc := &Doc{}
	var pendSetup, pendSkip string
	pendLine := 0 // line of the pending directive, for errors
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trim, "<!--"):
			// Collect the whole comment.
			start := i
			text := trim
			for !strings.Contains(text, "-->") {
				i++
				if i >= len(lines) {
					return nil, fmt.Errorf("line %d: unclosed HTML comment", start+1)
				}
				text += "\n" + lines[i]
			}
			body, _, _ := strings.Cut(strings.TrimPrefix(text, "<!--"), "-->")
			body = strings.TrimSpace(body)
			if !strings.HasPrefix(body, "doctest") {
				continue
			}
			kind, rest, ok := strings.Cut(strings.TrimPrefix(body, "doctest"), ":")
			kind = strings.TrimSpace(kind)
			switch {
			case !ok:
				return nil, fmt.Errorf("line %d: doctest comment without ':' (want doctest: skip — REASON, doctest setup: SCRIPT or doctest requires: TOOLS)", start+1)
			case kind == "" && (strings.TrimSpace(rest) == "skip" || strings.HasPrefix(strings.TrimSpace(rest), "skip ")):
				reason := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "skip"))
				reason = strings.TrimSpace(strings.TrimLeft(reason, "—–-:"))
				if reason == "" {
					return nil, fmt.Errorf("line %d: doctest skip without a reason", start+1)
				}
				if pendSkip != "" || pendSetup != "" {
					return nil, fmt.Errorf("line %d: two doctest directives for one block", start+1)
				}
				pendSkip, pendLine = reason, start+1
			case kind == "setup":
				if pendSkip != "" || pendSetup != "" {
					return nil, fmt.Errorf("line %d: two doctest directives for one block", start+1)
				}
				pendSetup, pendLine = strings.TrimSpace(rest), start+1
				if pendSetup == "" {
					return nil, fmt.Errorf("line %d: empty doctest setup", start+1)
				}
			case kind == "requires":
				tools := strings.Fields(rest)
				if len(tools) == 0 {
					return nil, fmt.Errorf("line %d: doctest requires names no tool", start+1)
				}
				doc.Requires = append(doc.Requires, tools...)
			default:
				return nil, fmt.Errorf("line %d: unknown doctest directive %q", start+1, kind)
			}
		case strings.HasPrefix(trim, "```") || strings.HasPrefix(trim, "~~~"):
			fence := trim[:3]
			indent := len(line) - len(strings.TrimLeft(line, " "))
			info := strings.TrimSpace(strings.TrimLeft(trim, fence[:1]))
			start := i
			var body []string
			for {
				i++
				if i >= len(lines) {
					return nil, fmt.Errorf("line %d: unclosed code block", start+1)
				}
				if strings.HasPrefix(strings.TrimSpace(lines[i]), fence) && strings.Trim(strings.TrimSpace(lines[i]), fence[:1]) == "" {
					break
				}
				l := lines[i]
				// Strip the fence's indentation (a block inside a list item).
				for n := 0; n < indent && strings.HasPrefix(l, " "); n++ {
					l = l[1:]
				}
				body = append(body, l)
			}
			if !shellInfo(info) {
				if pendSkip != "" {
					return nil, fmt.Errorf("line %d: doctest directive before a block that is not a shell block (```%s)", pendLine, info)
				}
				continue
			}
			b := Block{Line: start + 1, Setup: pendSetup, Skip: pendSkip}
			pendSetup, pendSkip = "", ""
			cmds, cmdLines, err := commands(body, start+2, complete)
			if err != nil {
				return nil, err
			}
			if len(cmds) == 0 && b.Skip == "" {
				return nil, fmt.Errorf("line %d: shell block without a command (fence output as ```text)", start+1)
			}
			b.Commands, b.CmdLines = cmds, cmdLines
			doc.Blocks = append(doc.Blocks, b)
		case trim == "":
		default:
			if pendSkip != "" {
				return nil, fmt.Errorf("line %d: doctest skip not followed by a code block", pendLine)
			}
		}
	}
	if pendSkip != "" || pendSetup != "" {
		return nil, fmt.Errorf("line %d: doctest directive not followed by a code block", pendLine)
	}
	return doc, nil
}

// commands splits a block's body (first line numbered first) into complete
// shell commands.
func commands(body []string, first int, complete func(string) bool) ([]string, []int, error) {
	prompt := false
	for _, l := range body {
		if strings.HasPrefix(l, "$ ") {
			prompt = true
		}
	}
	var cmds []string
	var at []int
	cur, curLine := "", 0
	for j, l := range body {
		if cur == "" {
			if prompt {
				c, ok := strings.CutPrefix(l, "$ ")
				if !ok {
					continue // shown output
				}
				l = c
			}
			if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			cur, curLine = l, first+j
		} else {
			cur += "\n" + l
		}
		if complete(cur) {
			cmds = append(cmds, cur)
			at = append(at, curLine)
			cur = ""
		}
	}
	if cur != "" {
		return nil, nil, errors.New("line " + fmt.Sprint(curLine) + ": incomplete shell command at the end of the block")
	}
	return cmds, at, nil
}
