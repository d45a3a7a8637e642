package workerhost

import (
	"strings"
	"testing"
)

func TestNewRefusesNegativePollers(t *testing.T) {
	if _, err := New(nil, Config{TaskQueue: "q", StateDir: t.TempDir(), Pollers: -1}); err == nil || !strings.Contains(err.Error(), "-1 pollers") {
		t.Fatalf("err %v, want one naming -1 pollers", err)
	}
}
