package extstep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// readOutputs merges the `::output` pairs with outputs.json, whose typed
// values win. A missing file means no outputs; a file that is not one JSON
// object is the command's bug, so the failure is permanent.
func readOutputs(path string, directives map[string]string) (map[string]any, error) {
	out := make(map[string]any, len(directives)+2)
	for k, v := range directives {
		out[k] = v
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, retryable(KindHost, fmt.Errorf("read %s: %w", path, err))
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, permanent(KindBadOutput, fmt.Errorf("%s: %s", path, describeJSONError(data, err)))
	}
	if obj == nil {
		return nil, permanent(KindBadOutput, fmt.Errorf("%s: want a JSON object, got null", path))
	}
	for k, v := range obj {
		out[k] = v
	}
	return out, nil
}

// describeJSONError turns a byte offset into line:column, which is what a
// person looking at the file needs.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Sprintf("invalid JSON at line %d, column %d (byte %d): %v", line, col, syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("want a JSON object, got %s", typ.Value)
	}
	return err.Error()
}

func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}
