package activities_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/activities"
)

// A state directory that cannot hold the store is an error from Register,
// which the worker reports at start-up, not a crash.
func TestRegisterReportsAnUnusableStateDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-directory")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := (&testsuite.WorkflowTestSuite{}).NewTestWorkflowEnvironment()
	err := activities.Register(env, activities.Config{PipelinesDir: t.TempDir(), StateDir: file})
	if err == nil || !strings.Contains(err.Error(), "not-a-directory") {
		t.Fatalf("Register with a file as its state directory: %v, want an error naming it", err)
	}
}
