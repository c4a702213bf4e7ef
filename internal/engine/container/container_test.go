package container

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDiscard: a discarded container is gone from the store at once, its
// directories are moved aside and deleted by remove, and what a daemon that
// stopped in between left aside is deleted by the next NewStore without
// being read as a record.
func TestDiscard(t *testing.T) {
	root, execRoot := t.TempDir(), t.TempDir()
	s, warns, err := NewStore(root, execRoot)
	if err != nil || len(warns) != 0 {
		t.Fatalf("NewStore: %v %v", err, warns)
	}
	add := func(name string) *Container {
		c := &Container{ID: s.NewID(), Name: name}
		if err := s.Add(c); err != nil {
			t.Fatal(err)
		}
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(c.run, "config.json"), []byte("{}"), 0o600)
		return c
	}
	a, b := add("first-one"), add("second-one")

	remove := s.Discard(a)
	if _, err := s.Get(a.ID); err == nil {
		t.Errorf("discarded container %s still found by ID", a.ID)
	}
	if _, err := s.Get("first-one"); err == nil {
		t.Errorf("discarded container still found by name")
	}
	for _, d := range []string{a.dir, a.run} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s still in place after Discard", d)
		}
	}
	if err := remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	for _, d := range []string{root + "/containers", execRoot} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.Name() != b.ID && e.Name() != b.ID[:12] {
				t.Errorf("left in %s after remove: %s", d, e.Name())
			}
		}
	}

	// Moved aside, then the daemon stops before deleting them.
	s.Discard(b)
	s2, warns, err := NewStore(root, execRoot)
	if err != nil || len(warns) != 0 {
		t.Fatalf("NewStore after a discard: %v, warnings %v", err, warns)
	}
	if _, err := s2.Get(b.ID); err == nil {
		t.Errorf("a discarded container came back as a record")
	}
	for _, d := range []string{root + "/containers", execRoot} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("NewStore left %d entries in %s", len(ents), d)
		}
	}
}
