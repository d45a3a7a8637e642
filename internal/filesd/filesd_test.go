package filesd

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteReadRemove(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := Group{Targets: []string{"10.0.3.7:9464"}, Labels: map[string]string{"node": "run-1-gpu-ab12", "run": "run-1", "step": "gpu"}}
	for range 2 {
		if err := d.Write("run-1-gpu-ab12", g); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(d.Path(), "gpu-workers-run-1-gpu-ab12.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 so that Prometheus' own user can read it", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(d.Path())
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the one file (no temporary left)", len(entries))
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "[\n  {\n    \"targets\": [\n      \"10.0.3.7:9464\"") {
		t.Errorf("not a file_sd list of groups:\n%s", b)
	}
	back, err := d.Read("run-1-gpu-ab12")
	if err != nil || !reflect.DeepEqual(back, g) {
		t.Errorf("read back %+v, %v; want %+v", back, err, g)
	}
	for range 2 {
		if err := d.Remove("run-1-gpu-ab12"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Read("run-1-gpu-ab12"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ok := Group{Targets: []string{"127.0.0.1:9464"}}
	for _, node := range []string{"", ".hidden", "a/b", "../up", "a b", strings.Repeat("x", 201)} {
		if err := d.Write(node, ok); err == nil || !strings.Contains(err.Error(), "node name") {
			t.Errorf("node %q: %v", node, err)
		}
	}
	for _, c := range []struct {
		g    Group
		want string
	}{
		{Group{}, "no target"},
		{Group{Targets: []string{":9464"}}, "no host"},
		{Group{Targets: []string{"host"}}, "want host:port"},
		{Group{Targets: []string{"host:0"}}, "port"},
		{Group{Targets: []string{"host:http"}}, "port"},
		{Group{Targets: ok.Targets, Labels: map[string]string{"__address__": "x"}}, "__address__"},
		{Group{Targets: ok.Targets, Labels: map[string]string{"gpu-model": "x"}}, "gpu-model"},
		{Group{Targets: ok.Targets, Labels: map[string]string{"node": "\xff"}}, "UTF-8"},
	} {
		err := d.Write("n", c.g)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "node n") {
			t.Errorf("%+v: %v, want an error naming node n and %q", c.g, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(d.Path()); len(entries) != 0 {
		t.Errorf("refused writes left %d files", len(entries))
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(t.TempDir(), "missing"), file, ""} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%q) accepted", p)
		}
	}
	if err := RemoveFile(file); err == nil || !strings.Contains(err.Error(), "not a node target file") {
		t.Errorf("RemoveFile of another file: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("RemoveFile removed %s: %v", file, err)
	}
}
