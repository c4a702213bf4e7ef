package lazyre

import "testing"

func TestCompilesOnFirstUse(t *testing.T) {
	r := New(`^[a-z]{1,3}$`)
	if r.re != nil {
		t.Fatal("compiled before first use")
	}
	if !r.MatchString("abc") || r.MatchString("abcd") {
		t.Fatal("wrong matches")
	}
	if r.re == nil {
		t.Fatal("not kept after first use")
	}
	if got := New(`x(\d)`).FindStringSubmatch("ax7"); len(got) != 2 || got[1] != "7" {
		t.Fatalf("FindStringSubmatch = %q", got)
	}
}

func TestInvalidPanicsAtFirstUse(t *testing.T) {
	r := New(`(`)
	defer func() {
		if recover() == nil {
			t.Fatal("an invalid pattern did not panic")
		}
	}()
	r.MatchString("x")
}
