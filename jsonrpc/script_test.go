package jsonrpc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A client that is not Go: testdata/client.py uses Python's standard
// library only.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	e := start(t, envOpts{slave: true})
	cmd := exec.Command(py, "testdata/client.py")
	cmd.Env = append(os.Environ(), "ANTHILL_MASTER="+e.base, "ANTHILL_TOKEN="+testToken)
	out, err := cmd.CombinedOutput()
	t.Logf("client.py:\n%s", out)
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("client.py: %v", err)
	}
}

// docExample is one ```sh block of docs/api.md that starts with curl.
type docExample struct {
	line      int
	script    string
	method    string
	wantError int // from a "# expect error CODE" line; 0: must succeed
}

func docExamples(t *testing.T) []docExample {
	t.Helper()
	f, err := os.Open("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docExample
	var cur *docExample
	var buf strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &docExample{line: n + 1}
			buf.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.script = buf.String()
			if strings.HasPrefix(strings.TrimSpace(cur.script), "curl") {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			buf.WriteString(line + "\n")
			if code, ok := strings.CutPrefix(strings.TrimSpace(line), "# expect error "); ok {
				if _, err := fmt.Sscan(code, &cur.wantError); err != nil {
					t.Fatalf("docs/api.md:%d: %q", n, line)
				}
			}
			if _, rest, ok := strings.Cut(line, `"method":"`); ok && cur.method == "" {
				cur.method, _, _ = strings.Cut(rest, `"`)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every curl example of docs/api.md runs verbatim against a real master
// and gets a JSON-RPC response, an error only where the block says so.
// $TASK_ID is given a task in the state its example needs; $SLAVE_ID is
// the real slave's session.
func TestDocExamples(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	examples := docExamples(t)
	if len(examples) < 12 {
		t.Fatalf("docs/api.md has %d curl examples; every method should have one", len(examples))
	}
	e := start(t, envOpts{slave: true})
	done := e.submit("docs", "echo", "hello")
	e.waitAll(done)
	var list SlaveList
	e.call("Slaves.List", nil, &list)
	// Tasks first, all of them: an example may drain the only slave.
	tasks := make([]uint64, len(examples))
	for i, ex := range examples {
		switch ex.method {
		case "Tasks.Cancel":
			tasks[i] = e.submit("docs", "nobody-runs-this", "")
		case "Tasks.Retry":
			tasks[i] = e.submit("docs", "fail", "oops", "max_attempts", 1)
			e.waitAll(tasks[i])
		default:
			tasks[i] = done
		}
	}
	documented := map[string]bool{}
	for i, ex := range examples {
		t.Run(fmt.Sprintf("line %d %s", ex.line, ex.method), func(t *testing.T) {
			documented[ex.method] = true
			task := tasks[i]
			cmd := exec.Command(sh, "-c", ex.script)
			cmd.Env = append(os.Environ(), "ANTHILL_MASTER="+e.base, "ANTHILL_TOKEN="+testToken,
				fmt.Sprintf("TASK_ID=%d", task), "SLAVE_ID="+list.Slaves[0].ID)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v\n%s\nstderr: %s", err, ex.script, stderr.String())
			}
			// An example may pipe several calls; each line of output is
			// one response.
			for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
				r := mustReply(t, line)
				switch {
				case ex.wantError == 0 && r.Error != nil:
					t.Errorf("%s\nunexpected error %d %s", ex.script, r.Error.Code, r.Error.Message)
				case ex.wantError != 0 && (r.Error == nil || r.Error.Code != ex.wantError):
					t.Errorf("%s\nwant error %d, got %s", ex.script, ex.wantError, line)
				}
			}
		})
	}
	for _, m := range []string{"Tasks.Submit", "Tasks.SubmitBatch", "Tasks.Get", "Tasks.Wait", "Tasks.List",
		"Tasks.Cancel", "Tasks.Retry", "Slaves.List", "Slaves.Get", "Slaves.Drain", "Apps.List",
		"Stats.Summary", "Master.Info", "Modules.Upload", "Modules.List", "Modules.Get", "Modules.Delete"} {
		if !documented[m] {
			t.Errorf("docs/api.md has no curl example of %s", m)
		}
	}
}
