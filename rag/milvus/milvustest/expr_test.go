package milvustest

import (
	"testing"

	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
)

func TestExpressions(t *testing.T) {
	fields := map[string]*schemapb.FieldSchema{
		"tenant_id":   {Name: "tenant_id", DataType: schemapb.DataType_Int64},
		"document_id": {Name: "document_id", DataType: schemapb.DataType_Int64},
		"name":        {Name: "name", DataType: schemapb.DataType_VarChar},
		"vector":      {Name: "vector", DataType: schemapb.DataType_FloatVector},
	}
	row := map[string]any{"tenant_id": int64(5), "document_id": int64(12), "name": "guide.md"}
	tests := []struct {
		expr string
		want bool
	}{
		{"tenant_id == 5", true},
		{"tenant_id == 6", false},
		{"tenant_id != 6", true},
		{"tenant_id == 5 && document_id in [1, 12, 30]", true},
		{"tenant_id == 5 and document_id in [1,30]", false},
		{"tenant_id == 6 || document_id == 12", true},
		{"tenant_id == 6 or (document_id >= 13)", false},
		{"not tenant_id == 6", true},
		{"!(tenant_id == 5)", false},
		{"document_id not in [12]", false},
		{`name == "guide.md"`, true},
		{`name in ['a', 'guide.md']`, true},
		{"document_id < 12 || document_id > 12", false},
		{"document_id <= 12 && document_id >= -3", true},
	}
	for _, tc := range tests {
		n, err := parse(tc.expr, fields)
		if err != nil {
			t.Errorf("parse(%q) = %v", tc.expr, err)
			continue
		}
		if got := n.eval(row); got != tc.want {
			t.Errorf("eval(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{"", "tenant == 5", "tenant_id = 5", "tenant_id == 'x'", `name == 3`,
		"tenant_id == 5 &&", "(tenant_id == 5", "vector == 1", "document_id in [1, 2", "tenant_id == 5 extra"} {
		if _, err := parse(bad, fields); err == nil {
			t.Errorf("parse(%q) = nil error, want one", bad)
		}
	}
}
