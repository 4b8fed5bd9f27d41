// Package milvustest is an in-process Milvus for tests: a gRPC server on a
// loopback port that implements, over milvus-proto's generated
// MilvusService, the calls that rag/milvus makes (Connect, collections,
// indexes, load, insert, delete, search, query) with Milvus's semantics for
// them: collections with schemas and auto ids, boolean filter expressions
// (==, !=, <, <=, >, >=, in, not in, and/&&, or/||, not/!, parentheses) over
// Int64 and VarChar fields, exact inner-product / cosine / L2 search, and
// token authentication. Everything else answers Unimplemented.
//
// It is not Milvus: no segments, no consistency levels (every write is
// visible at once), no real index. What it checks is that the adapter sends
// what Milvus expects and relies only on what Milvus promises.
package milvustest

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server is the fake. Start one with Start. Its methods are safe for
// concurrent use.
type Server struct {
	milvuspb.UnimplementedMilvusServiceServer

	// Token, when set, is required in every call (MILVUS_TOKEN).
	Token string

	addr string
	mu   sync.Mutex
	cols map[string]*collection
	// Calls counts the calls by method name (for tests).
	calls map[string]int
}

type collection struct {
	id      int64
	schema  *schemapb.CollectionSchema
	fields  map[string]*schemapb.FieldSchema
	pk      string
	metric  string // the vector index's metric
	indexed bool
	loaded  bool
	nextID  int64
	rows    []row
}

type row struct {
	id     int64
	values map[string]any // int64 or string
	vector []float32
}

// Start serves a new fake on 127.0.0.1 until t ends.
func Start(t testing.TB, token string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Token: token, addr: ln.Addr().String(), cols: map[string]*collection{}, calls: map[string]int{}}
	g := grpc.NewServer(grpc.UnaryInterceptor(s.auth))
	milvuspb.RegisterMilvusServiceServer(g, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(ln)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Rows returns how many rows collection name holds (-1: no such collection).
func (s *Server) Rows(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cols[name]
	if c == nil {
		return -1
	}
	return len(c.rows)
}

// Calls returns how many times method (e.g. "Search") was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *Server) auth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	s.calls[methodName(info.FullMethod)]++
	s.mu.Unlock()
	if s.Token != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		want := base64.StdEncoding.EncodeToString([]byte(s.Token))
		if v := md.Get("authorization"); len(v) == 0 || v[0] != want {
			return nil, status.Error(codes.Unauthenticated, "invalid token")
		}
	}
	return h(ctx, req)
}

func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

func fail(err error) *commonpb.Status { return merr.Status(err) }

// collection returns the named collection; s.mu is held.
func (s *Server) collection(name string) (*collection, error) {
	c := s.cols[name]
	if c == nil {
		return nil, merr.WrapErrCollectionNotFound(name)
	}
	return c, nil
}

// Connect implements MilvusService.
func (s *Server) Connect(ctx context.Context, req *milvuspb.ConnectRequest) (*milvuspb.ConnectResponse, error) {
	return &milvuspb.ConnectResponse{Status: merr.Success(), ServerInfo: &commonpb.ServerInfo{BuildTags: "milvustest"}, Identifier: 1}, nil
}

// CreateCollection implements MilvusService.
func (s *Server) CreateCollection(ctx context.Context, req *milvuspb.CreateCollectionRequest) (*commonpb.Status, error) {
	var schema schemapb.CollectionSchema
	if err := proto.Unmarshal(req.GetSchema(), &schema); err != nil {
		return fail(merr.WrapErrParameterInvalidMsg("schema: %v", err)), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cols[req.GetCollectionName()]; ok {
		return fail(merr.WrapErrCollectionIllegalSchema(req.GetCollectionName(), "collection already exists")), nil
	}
	c := &collection{id: int64(len(s.cols) + 1), schema: &schema, fields: map[string]*schemapb.FieldSchema{}, nextID: 1000}
	for i, f := range schema.Fields {
		f.FieldID = int64(100 + i)
		switch f.DataType {
		case schemapb.DataType_Int64, schemapb.DataType_VarChar, schemapb.DataType_FloatVector:
		default:
			return fail(merr.WrapErrParameterInvalidMsg("field %s: type %s is not supported by milvustest", f.Name, f.DataType)), nil
		}
		if f.IsPrimaryKey {
			c.pk = f.Name
		}
		if f.IsPartitionKey {
			if f.DataType != schemapb.DataType_Int64 && f.DataType != schemapb.DataType_VarChar {
				return fail(merr.WrapErrParameterInvalidMsg("partition key %s must be Int64 or VarChar", f.Name)), nil
			}
		}
		c.fields[f.Name] = f
	}
	if c.pk == "" {
		return fail(merr.WrapErrParameterInvalidMsg("no primary key")), nil
	}
	if schema.Name == "" {
		schema.Name = req.GetCollectionName()
	}
	s.cols[req.GetCollectionName()] = c
	return merr.Success(), nil
}

// DescribeCollection implements MilvusService.
func (s *Server) DescribeCollection(ctx context.Context, req *milvuspb.DescribeCollectionRequest) (*milvuspb.DescribeCollectionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.DescribeCollectionResponse{Status: fail(err)}, nil
	}
	return &milvuspb.DescribeCollectionResponse{Status: merr.Success(), Schema: c.schema, CollectionID: c.id,
		CollectionName: req.GetCollectionName(), ConsistencyLevel: commonpb.ConsistencyLevel_Bounded, ShardsNum: 1}, nil
}

// CreateIndex implements MilvusService.
func (s *Server) CreateIndex(ctx context.Context, req *milvuspb.CreateIndexRequest) (*commonpb.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return fail(err), nil
	}
	f := c.fields[req.GetFieldName()]
	if f == nil || f.DataType != schemapb.DataType_FloatVector {
		return fail(merr.WrapErrParameterInvalidMsg("field %q is not a vector field", req.GetFieldName())), nil
	}
	for _, kv := range req.GetExtraParams() {
		if kv.Key == "metric_type" {
			c.metric = kv.Value
		}
	}
	switch c.metric {
	case "IP", "COSINE", "L2":
	default:
		return fail(merr.WrapErrParameterInvalidMsg("metric_type %q", c.metric)), nil
	}
	c.indexed = true
	return merr.Success(), nil
}

// DescribeIndex implements MilvusService.
func (s *Server) DescribeIndex(ctx context.Context, req *milvuspb.DescribeIndexRequest) (*milvuspb.DescribeIndexResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.DescribeIndexResponse{Status: fail(err)}, nil
	}
	if !c.indexed {
		return &milvuspb.DescribeIndexResponse{Status: fail(merr.WrapErrIndexNotFound(req.GetIndexName()))}, nil
	}
	for name, f := range c.fields {
		if f.DataType == schemapb.DataType_FloatVector {
			return &milvuspb.DescribeIndexResponse{Status: merr.Success(), IndexDescriptions: []*milvuspb.IndexDescription{{
				IndexName: name, FieldName: name, State: commonpb.IndexState_Finished,
				Params: []*commonpb.KeyValuePair{{Key: "metric_type", Value: c.metric}},
			}}}, nil
		}
	}
	return &milvuspb.DescribeIndexResponse{Status: fail(merr.WrapErrIndexNotFound(req.GetIndexName()))}, nil
}

// LoadCollection implements MilvusService.
func (s *Server) LoadCollection(ctx context.Context, req *milvuspb.LoadCollectionRequest) (*commonpb.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return fail(err), nil
	}
	if !c.indexed {
		return fail(merr.WrapErrIndexNotFoundForCollection(req.GetCollectionName())), nil
	}
	c.loaded = true
	return merr.Success(), nil
}

// GetLoadingProgress implements MilvusService.
func (s *Server) GetLoadingProgress(ctx context.Context, req *milvuspb.GetLoadingProgressRequest) (*milvuspb.GetLoadingProgressResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.GetLoadingProgressResponse{Status: fail(err)}, nil
	}
	p := int64(0)
	if c.loaded {
		p = 100
	}
	return &milvuspb.GetLoadingProgressResponse{Status: merr.Success(), Progress: p, RefreshProgress: p}, nil
}

// Insert implements MilvusService.
func (s *Server) Insert(ctx context.Context, req *milvuspb.InsertRequest) (*milvuspb.MutationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.MutationResult{Status: fail(err)}, nil
	}
	n := int(req.GetNumRows())
	rows := make([]row, n)
	for i := range rows {
		rows[i].values = map[string]any{}
	}
	seen := map[string]bool{}
	for _, fd := range req.GetFieldsData() {
		f := c.fields[fd.GetFieldName()]
		if f == nil {
			return &milvuspb.MutationResult{Status: fail(merr.WrapErrFieldNotFound(fd.GetFieldName()))}, nil
		}
		if f.AutoID {
			return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s is an auto id: do not send it", f.Name))}, nil
		}
		seen[f.Name] = true
		switch f.DataType {
		case schemapb.DataType_Int64:
			d := fd.GetScalars().GetLongData().GetData()
			if len(d) != n {
				return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s: %d values for %d rows", f.Name, len(d), n))}, nil
			}
			for i, v := range d {
				rows[i].values[f.Name] = v
			}
		case schemapb.DataType_VarChar:
			d := fd.GetScalars().GetStringData().GetData()
			if len(d) != n {
				return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s: %d values for %d rows", f.Name, len(d), n))}, nil
			}
			max, _ := strconv.Atoi(typeParam(f, "max_length"))
			for i, v := range d {
				if max > 0 && len(v) > max {
					return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s: length %d exceeds max_length %d", f.Name, len(v), max))}, nil
				}
				rows[i].values[f.Name] = v
			}
		case schemapb.DataType_FloatVector:
			dim, _ := strconv.Atoi(typeParam(f, "dim"))
			v := fd.GetVectors()
			d := v.GetFloatVector().GetData()
			if int(v.GetDim()) != dim || len(d) != n*dim {
				return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s: want %d vectors of %d dimensions", f.Name, n, dim))}, nil
			}
			for i := range rows {
				rows[i].vector = slices.Clone(d[i*dim : (i+1)*dim])
			}
		}
	}
	for name, f := range c.fields {
		if !seen[name] && !f.AutoID {
			return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("field %s is missing", name))}, nil
		}
	}
	ids := make([]int64, n)
	for i := range rows {
		c.nextID++
		rows[i].id = c.nextID
		rows[i].values[c.pk] = c.nextID
		ids[i] = c.nextID
	}
	c.rows = append(c.rows, rows...)
	return &milvuspb.MutationResult{Status: merr.Success(), InsertCnt: int64(n),
		IDs: &schemapb.IDs{IdField: &schemapb.IDs_IntId{IntId: &schemapb.LongArray{Data: ids}}}}, nil
}

func typeParam(f *schemapb.FieldSchema, key string) string {
	for _, kv := range f.GetTypeParams() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

// Delete implements MilvusService: rows matching the expression go.
func (s *Server) Delete(ctx context.Context, req *milvuspb.DeleteRequest) (*milvuspb.MutationResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.MutationResult{Status: fail(err)}, nil
	}
	if req.GetExpr() == "" {
		return &milvuspb.MutationResult{Status: fail(merr.WrapErrParameterInvalidMsg("delete needs an expression"))}, nil
	}
	e, err := parse(req.GetExpr(), c.fields)
	if err != nil {
		return &milvuspb.MutationResult{Status: fail(err)}, nil
	}
	before := len(c.rows)
	c.rows = slices.DeleteFunc(c.rows, func(r row) bool { return e.eval(r.values) })
	return &milvuspb.MutationResult{Status: merr.Success(), DeleteCnt: int64(before - len(c.rows))}, nil
}

// Search implements MilvusService: exact search over the rows that match
// the filter.
func (s *Server) Search(ctx context.Context, req *milvuspb.SearchRequest) (*milvuspb.SearchResults, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.SearchResults{Status: fail(err)}, nil
	}
	if !c.loaded {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrCollectionNotLoaded(req.GetCollectionName()))}, nil
	}
	params := map[string]string{}
	for _, kv := range req.GetSearchParams() {
		params[kv.Key] = kv.Value
	}
	field := c.fields[params["anns_field"]]
	if field == nil || field.DataType != schemapb.DataType_FloatVector {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("anns_field %q", params["anns_field"]))}, nil
	}
	topk, err := strconv.Atoi(params["topk"])
	if err != nil || topk < 1 || topk > 16384 {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("topk %q", params["topk"]))}, nil
	}
	metric := params["metric_type"]
	if metric == "" {
		metric = c.metric
	}
	if metric != c.metric {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("metric type %s does not match the index's %s", metric, c.metric))}, nil
	}
	var pg commonpb.PlaceholderGroup
	if err := proto.Unmarshal(req.GetPlaceholderGroup(), &pg); err != nil || len(pg.Placeholders) != 1 {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("placeholder group"))}, nil
	}
	ph := pg.Placeholders[0]
	dim, _ := strconv.Atoi(typeParam(field, "dim"))
	if ph.Type != commonpb.PlaceholderType_FloatVector {
		return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("placeholder type %s", ph.Type))}, nil
	}
	var match func(map[string]any) bool
	if req.GetDsl() != "" {
		e, err := parse(req.GetDsl(), c.fields)
		if err != nil {
			return &milvuspb.SearchResults{Status: fail(err)}, nil
		}
		match = e.eval
	}
	out := &schemapb.SearchResultData{NumQueries: int64(len(ph.Values)), TopK: int64(topk)}
	var ids []int64
	var picked []row
	for _, raw := range ph.Values {
		if len(raw) != 4*dim {
			return &milvuspb.SearchResults{Status: fail(merr.WrapErrParameterInvalidMsg("query vector of %d bytes, want %d", len(raw), 4*dim))}, nil
		}
		q := make([]float32, dim)
		for i := range q {
			q[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		type scored struct {
			r row
			s float32
		}
		var all []scored
		for _, r := range c.rows {
			if match == nil || match(r.values) {
				all = append(all, scored{r, score(metric, q, r.vector)})
			}
		}
		slices.SortStableFunc(all, func(a, b scored) int {
			better := a.s > b.s
			if metric == "L2" {
				better = a.s < b.s
			}
			switch {
			case a.s == b.s:
				return 0
			case better:
				return -1
			}
			return 1
		})
		all = all[:min(topk, len(all))]
		out.Topks = append(out.Topks, int64(len(all)))
		for _, a := range all {
			ids = append(ids, a.r.id)
			out.Scores = append(out.Scores, a.s)
			picked = append(picked, a.r)
		}
	}
	out.Ids = &schemapb.IDs{IdField: &schemapb.IDs_IntId{IntId: &schemapb.LongArray{Data: ids}}}
	fields, err := c.fieldsData(req.GetOutputFields(), picked)
	if err != nil {
		return &milvuspb.SearchResults{Status: fail(err)}, nil
	}
	out.FieldsData = fields
	out.OutputFields = req.GetOutputFields()
	return &milvuspb.SearchResults{Status: merr.Success(), Results: out, CollectionName: req.GetCollectionName()}, nil
}

func score(metric string, a, b []float32) float32 {
	var dot, na, nb, l2 float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
		l2 += (x - y) * (x - y)
	}
	switch metric {
	case "COSINE":
		if na == 0 || nb == 0 {
			return 0
		}
		return float32(dot / math.Sqrt(na*nb))
	case "L2":
		return float32(l2)
	}
	return float32(dot)
}

// fieldsData renders the output fields of rows.
func (c *collection) fieldsData(names []string, rows []row) ([]*schemapb.FieldData, error) {
	var out []*schemapb.FieldData
	for _, name := range names {
		f := c.fields[name]
		if f == nil {
			return nil, merr.WrapErrFieldNotFound(name)
		}
		fd := &schemapb.FieldData{Type: f.DataType, FieldName: name, FieldId: f.FieldID}
		switch f.DataType {
		case schemapb.DataType_Int64:
			d := make([]int64, len(rows))
			for i, r := range rows {
				d[i], _ = r.values[name].(int64)
			}
			fd.Field = &schemapb.FieldData_Scalars{Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_LongData{LongData: &schemapb.LongArray{Data: d}}}}
		case schemapb.DataType_VarChar:
			d := make([]string, len(rows))
			for i, r := range rows {
				d[i], _ = r.values[name].(string)
			}
			fd.Field = &schemapb.FieldData_Scalars{Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_StringData{StringData: &schemapb.StringArray{Data: d}}}}
		case schemapb.DataType_FloatVector:
			dim, _ := strconv.Atoi(typeParam(f, "dim"))
			var d []float32
			for _, r := range rows {
				d = append(d, r.vector...)
			}
			fd.Field = &schemapb.FieldData_Vectors{Vectors: &schemapb.VectorField{Dim: int64(dim), Data: &schemapb.VectorField_FloatVector{FloatVector: &schemapb.FloatArray{Data: d}}}}
		}
		out = append(out, fd)
	}
	return out, nil
}

// Query implements MilvusService: the rows matching the expression, or
// their count with the output field "count(*)".
func (s *Server) Query(ctx context.Context, req *milvuspb.QueryRequest) (*milvuspb.QueryResults, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return &milvuspb.QueryResults{Status: fail(err)}, nil
	}
	if !c.loaded {
		return &milvuspb.QueryResults{Status: fail(merr.WrapErrCollectionNotLoaded(req.GetCollectionName()))}, nil
	}
	e, err := parse(req.GetExpr(), c.fields)
	if err != nil {
		return &milvuspb.QueryResults{Status: fail(err)}, nil
	}
	var rows []row
	for _, r := range c.rows {
		if e.eval(r.values) {
			rows = append(rows, r)
		}
	}
	if slices.Equal(req.GetOutputFields(), []string{"count(*)"}) {
		return &milvuspb.QueryResults{Status: merr.Success(), OutputFields: []string{"count(*)"},
			FieldsData: []*schemapb.FieldData{{Type: schemapb.DataType_Int64, FieldName: "count(*)",
				Field: &schemapb.FieldData_Scalars{Scalars: &schemapb.ScalarField{Data: &schemapb.ScalarField_LongData{LongData: &schemapb.LongArray{Data: []int64{int64(len(rows))}}}}}}}}, nil
	}
	fields, err := c.fieldsData(req.GetOutputFields(), rows)
	if err != nil {
		return &milvuspb.QueryResults{Status: fail(err)}, nil
	}
	return &milvuspb.QueryResults{Status: merr.Success(), FieldsData: fields, OutputFields: req.GetOutputFields(), PrimaryFieldName: c.pk}, nil
}
