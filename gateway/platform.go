package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/tenancy"
)

// The documented platform API (/api/v1): authentication, tenants, API keys
// and user management. It is not on the hot path: plain encoding/json.

// Platform is what the /api/v1 handlers need from tenancy.
// *tenancy.Service implements it.
type Platform interface {
	Login(ctx context.Context, tenantName, username, password string) (string, time.Duration, error)
	AuthenticateJWT(ctx context.Context, token, tenantHeader string) (*tenancy.Principal, error)

	CreateTenant(ctx context.Context, in tenancy.TenantUpdate) (*tenancy.Tenant, error)
	GetTenant(ctx context.Context, id int64) (*tenancy.Tenant, error)
	GetTenantByName(ctx context.Context, name string) (*tenancy.Tenant, error)
	ListTenants(ctx context.Context, limit, offset int) ([]*tenancy.Tenant, int, error)
	UpdateTenant(ctx context.Context, id int64, upd tenancy.TenantUpdate) (*tenancy.Tenant, error)
	DeleteTenant(ctx context.Context, id int64) error

	CreateUser(ctx context.Context, tenantID int64, username, password string, role tenancy.Role) (*tenancy.User, error)
	GetUser(ctx context.Context, tenantID, id int64) (*tenancy.User, error)
	ListUsers(ctx context.Context, tenantID int64, limit, offset int) ([]*tenancy.User, int, error)
	ListAllUsers(ctx context.Context, limit, offset int) ([]*tenancy.User, int, error)
	UpdateUser(ctx context.Context, tenantID, id int64, upd tenancy.UserUpdate) (*tenancy.User, error)

	CreateKeyWithLimits(ctx context.Context, tenantID, userID int64, name string, expiresAt *time.Time, limits tenancy.RateLimits) (*tenancy.APIKey, string, error)
	GetKey(ctx context.Context, tenantID, keyID int64) (*tenancy.APIKey, error)
	ListKeys(ctx context.Context, tenantID int64, limit, offset int) ([]*tenancy.APIKey, int, error)
	UpdateKey(ctx context.Context, tenantID, keyID int64, upd tenancy.KeyUpdate) (*tenancy.APIKey, error)
	RevokeKey(ctx context.Context, tenantID, keyID int64) error
}

var _ Platform = (*tenancy.Service)(nil)

// platformRoutes registers /api/v1 on r.
func (s *Server) platformRoutes(r *router.Router) {
	if s.platform == nil {
		return
	}
	r.POST("/api/v1/auth/login", s.v1api("auth", s.login, false))
	// the documented path has a trailing slash; the router serves both forms
	r.GET("/api/v1/tenants/", s.v1api("tenants", s.listTenants, true))
	r.POST("/api/v1/tenants/", s.v1api("tenants", s.createTenant, true))
	r.GET("/api/v1/tenants/{id}", s.v1api("tenants", s.getTenant, true))
	r.PUT("/api/v1/tenants/{id}", s.v1api("tenants", s.updateTenant, true))
	r.PATCH("/api/v1/tenants/{id}", s.v1api("tenants", s.updateTenant, true))
	r.DELETE("/api/v1/tenants/{id}", s.v1api("tenants", s.deleteTenant, true))

	r.GET("/api/v1/keys", s.v1api("keys", s.listKeys, true))
	r.POST("/api/v1/keys", s.v1api("keys", s.createKey, true))
	r.GET("/api/v1/keys/{id}", s.v1api("keys", s.getKey, true))
	r.PATCH("/api/v1/keys/{id}", s.v1api("keys", s.updateKey, true))
	r.DELETE("/api/v1/keys/{id}", s.v1api("keys", s.revokeKey, true))

	r.GET("/api/v1/admin/users", s.v1api("users", s.listUsers, true))
	r.POST("/api/v1/admin/users", s.v1api("users", s.createUser, true))
	r.GET("/api/v1/admin/users/{id}", s.v1api("users", s.getUser, true))
	r.PUT("/api/v1/admin/users/{id}", s.v1api("users", s.updateUser, true))
	r.PATCH("/api/v1/admin/users/{id}", s.v1api("users", s.updateUser, true))
}

// v1api wraps an /api/v1 handler: request state, authentication (when
// auth is true), errors in OpenAI's shape, access log.
func (s *Server) v1api(route string, h func(rc *fasthttp.RequestCtx, st *reqState) error, auth bool) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		st := s.begin(rc, route)
		var err error
		if auth {
			st.principal, err = s.authenticatePlatform(rc)
		}
		if err == nil {
			err = h(rc, st)
		}
		if err != nil {
			st.fail(writeError(rc, err))
		}
		st.status = rc.Response.StatusCode()
		s.finish(st)
	}
}

// authenticatePlatform accepts a JWT with a matching X-Tenant-ID, or an API
// key (which implies its tenant; an X-Tenant-ID that disagrees is refused).
func (s *Server) authenticatePlatform(rc *fasthttp.RequestCtx) (*tenancy.Principal, error) {
	h := rc.Request.Header.Peek("Authorization")
	const bearer = "Bearer "
	if len(h) <= len(bearer) || !strings.EqualFold(string(h[:len(bearer)]), bearer) {
		return nil, tenancy.ErrUnauthenticated
	}
	token := h[len(bearer):]
	tenantHeader := string(rc.Request.Header.Peek("X-Tenant-ID"))
	if bytes.HasPrefix(token, []byte("sk-")) {
		p, err := s.keys.ResolveKey(s.ctx, token)
		if err != nil {
			return nil, err
		}
		if tenantHeader != "" && tenantHeader != p.Tenant {
			return nil, fmt.Errorf("%w: X-Tenant-ID %q does not match the key's tenant", tenancy.ErrForbidden, tenantHeader)
		}
		return p, nil
	}
	if tenantHeader == "" {
		return nil, invalid("X-Tenant-ID", "The X-Tenant-ID header is required with a JWT.")
	}
	return s.platform.AuthenticateJWT(s.ctx, string(token), tenantHeader)
}

// writeJSON answers v as JSON with status.
func writeJSON(rc *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.SetBody(b)
	return nil
}

// decodeJSON decodes the body into v, refusing unknown fields.
func decodeJSON(rc *fasthttp.RequestCtx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(rc.PostBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := jsonPath(te.Field)
			return invalid(field, fmt.Sprintf("'%s' must be %s.", field, jsonType(te.Type)))
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			field := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			return invalid(field, "Unknown field '"+field+"'.")
		}
		return invalid("", "The request body is not valid JSON: "+msg)
	}
	return nil
}

// jsonPath is the path of a field as the client wrote it: encoding/json
// names the Go types of embedded structs too ("RateLimits.tokens_per_minute"),
// which are not in the API (its names are lower case).
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// jsonType names what a Go type accepts, in JSON's words.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return "an RFC 3339 time"
		}
		return "an object"
	}
	return "a " + t.String()
}

// page reads limit and offset from the query string.
func page(rc *fasthttp.RequestCtx) (limit, offset int, err error) {
	args := rc.QueryArgs()
	limit, offset = 100, 0
	if v := args.Peek("limit"); len(v) > 0 {
		if limit, err = strconv.Atoi(string(v)); err != nil || limit < 1 || limit > 1000 {
			return 0, 0, invalid("limit", "'limit' must be an integer from 1 to 1000.")
		}
	}
	if v := args.Peek("offset"); len(v) > 0 {
		if offset, err = strconv.Atoi(string(v)); err != nil || offset < 0 {
			return 0, 0, invalid("offset", "'offset' must be a non-negative integer.")
		}
	}
	return limit, offset, nil
}

// list is the shape of every paginated answer.
type list[T any] struct {
	Object string `json:"object"`
	Data   []T    `json:"data"`
	Total  int    `json:"total"`
	Limit  int    `json:"limit"`
	Offset int    `json:"offset"`
}

func writeList[T any](rc *fasthttp.RequestCtx, data []T, total, limit, offset int) error {
	if data == nil {
		data = []T{}
	}
	return writeJSON(rc, 200, list[T]{Object: "list", Data: data, Total: total, Limit: limit, Offset: offset})
}

func idParam(rc *fasthttp.RequestCtx) (int64, error) {
	v, _ := rc.UserValue("id").(string)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%w: no such id %q", errNotFound, v)
	}
	return id, nil
}

func requireRole(p *tenancy.Principal, min tenancy.Role) error {
	if !p.Role.AtLeast(min) {
		return fmt.Errorf("%w: this needs the %s role", tenancy.ErrForbidden, min)
	}
	return nil
}

// login serves POST /api/v1/auth/login.
func (s *Server) login(rc *fasthttp.RequestCtx, st *reqState) error {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	tenant := string(rc.Request.Header.Peek("X-Tenant-ID"))
	switch {
	case tenant == "":
		return invalid("X-Tenant-ID", "The X-Tenant-ID header names the tenant to sign in to.")
	case in.Username == "":
		return invalid("username", "'username' is required.")
	case in.Password == "":
		return invalid("password", "'password' is required.")
	}
	token, ttl, err := s.platform.Login(s.ctx, tenant, in.Username, in.Password)
	if err != nil {
		if errors.Is(err, tenancy.ErrUnauthenticated) {
			return errBadCredentials
		}
		return err
	}
	return writeJSON(rc, 200, map[string]any{
		"access_token": token, "token_type": "bearer", "expires_in": int(ttl / time.Second),
	})
}

// listTenants serves GET /api/v1/tenants/ (platform admins).
func (s *Server) listTenants(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := requireRole(st.principal, tenancy.RolePlatformAdmin); err != nil {
		return err
	}
	limit, offset, err := page(rc)
	if err != nil {
		return err
	}
	ts, total, err := s.platform.ListTenants(s.ctx, limit, offset)
	if err != nil {
		return err
	}
	return writeList(rc, ts, total, limit, offset)
}

// createTenant serves POST /api/v1/tenants/ (platform admins).
func (s *Server) createTenant(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := requireRole(st.principal, tenancy.RolePlatformAdmin); err != nil {
		return err
	}
	var in tenancy.TenantUpdate
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	t, err := s.platform.CreateTenant(s.ctx, in)
	if err != nil {
		return err
	}
	return writeJSON(rc, 201, t)
}

// visibleTenant returns tenant id if the caller may see it: platform admins
// see every tenant, others only their own (another's is 404, not 403).
func (s *Server) visibleTenant(rc *fasthttp.RequestCtx, p *tenancy.Principal) (*tenancy.Tenant, error) {
	id, err := idParam(rc)
	if err != nil {
		return nil, err
	}
	if p.Role != tenancy.RolePlatformAdmin && id != p.TenantID {
		return nil, fmt.Errorf("%w: no tenant %d", tenancy.ErrNotFound, id)
	}
	return s.platform.GetTenant(s.ctx, id)
}

// getTenant serves GET /api/v1/tenants/{id}.
func (s *Server) getTenant(rc *fasthttp.RequestCtx, st *reqState) error {
	t, err := s.visibleTenant(rc, st.principal)
	if err != nil {
		return err
	}
	return writeJSON(rc, 200, t)
}

// updateTenant serves PUT /api/v1/tenants/{id} (platform admins; partial).
func (s *Server) updateTenant(rc *fasthttp.RequestCtx, st *reqState) error {
	t, err := s.visibleTenant(rc, st.principal)
	if err != nil {
		return err
	}
	if err := requireRole(st.principal, tenancy.RolePlatformAdmin); err != nil {
		return err
	}
	var in tenancy.TenantUpdate
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	t, err = s.platform.UpdateTenant(s.ctx, t.ID, in)
	if err != nil {
		return err
	}
	return writeJSON(rc, 200, t)
}

// deleteTenant serves DELETE /api/v1/tenants/{id}: disables it at once.
func (s *Server) deleteTenant(rc *fasthttp.RequestCtx, st *reqState) error {
	t, err := s.visibleTenant(rc, st.principal)
	if err != nil {
		return err
	}
	if err := requireRole(st.principal, tenancy.RolePlatformAdmin); err != nil {
		return err
	}
	if t.ID == st.principal.TenantID {
		return &requestError{status: 409, code: "conflict", message: "A platform admin cannot delete their own tenant."}
	}
	if err := s.platform.DeleteTenant(s.ctx, t.ID); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// targetTenant is the tenant a key or user request acts on: the caller's,
// or (platform admins only) the one named.
func (s *Server) targetTenant(p *tenancy.Principal, name string) (int64, error) {
	if name == "" || name == p.Tenant {
		return p.TenantID, nil
	}
	if p.Role != tenancy.RolePlatformAdmin {
		// 404, not 403: a caller cannot even learn that the tenant exists
		return 0, fmt.Errorf("%w: no tenant %q", tenancy.ErrNotFound, name)
	}
	t, err := s.platform.GetTenantByName(s.ctx, name)
	if err != nil {
		return 0, err
	}
	return t.ID, nil
}

// createKey serves POST /api/v1/keys. Members get keys for themselves.
// The key's own rate limits are optional (0 or absent: none).
func (s *Server) createKey(rc *fasthttp.RequestCtx, st *reqState) error {
	var in struct {
		Name      string     `json:"name"`
		ExpiresAt *time.Time `json:"expires_at"`
		Tenant    string     `json:"tenant"`
		tenancy.RateLimits
	}
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	p := st.principal
	tenantID, err := s.targetTenant(p, in.Tenant)
	if err != nil {
		return err
	}
	userID := p.UserID
	if tenantID != p.TenantID {
		userID = 0 // a platform admin's key for another tenant acts as a member there
	}
	k, secret, err := s.platform.CreateKeyWithLimits(s.ctx, tenantID, userID, in.Name, in.ExpiresAt, in.RateLimits)
	if err != nil {
		return err
	}
	return writeJSON(rc, 201, struct {
		*tenancy.APIKey
		Key string `json:"key"`
	}{k, secret})
}

// listKeys serves GET /api/v1/keys: the tenant's keys (a member's own).
func (s *Server) listKeys(rc *fasthttp.RequestCtx, st *reqState) error {
	limit, offset, err := page(rc)
	if err != nil {
		return err
	}
	p := st.principal
	tenantID, err := s.targetTenant(p, string(rc.QueryArgs().Peek("tenant")))
	if err != nil {
		return err
	}
	if !p.Role.AtLeast(tenancy.RoleTenantAdmin) {
		all, _, err := s.platform.ListKeys(s.ctx, tenantID, 1000, 0)
		if err != nil {
			return err
		}
		mine := make([]*tenancy.APIKey, 0, len(all))
		for _, k := range all {
			if p.UserID != 0 && k.UserID == p.UserID {
				mine = append(mine, k)
			}
		}
		total := len(mine)
		mine = mine[min(offset, total):min(offset+limit, total)]
		return writeList(rc, mine, total, limit, offset)
	}
	keys, total, err := s.platform.ListKeys(s.ctx, tenantID, limit, offset)
	if err != nil {
		return err
	}
	return writeList(rc, keys, total, limit, offset)
}

// keyInScope finds key {id} of the caller's tenant (or, for platform
// admins, of ?tenant=NAME); a member sees only the keys issued to them.
// Anything else is 404.
func (s *Server) keyInScope(rc *fasthttp.RequestCtx, p *tenancy.Principal) (*tenancy.APIKey, error) {
	id, err := idParam(rc)
	if err != nil {
		return nil, err
	}
	tenantID, err := s.targetTenant(p, string(rc.QueryArgs().Peek("tenant")))
	if err != nil {
		return nil, err
	}
	k, err := s.platform.GetKey(s.ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if !p.Role.AtLeast(tenancy.RoleTenantAdmin) && (p.UserID == 0 || k.UserID != p.UserID) {
		return nil, fmt.Errorf("%w: no key %d", tenancy.ErrNotFound, id)
	}
	return k, nil
}

// getKey serves GET /api/v1/keys/{id}.
func (s *Server) getKey(rc *fasthttp.RequestCtx, st *reqState) error {
	k, err := s.keyInScope(rc, st.principal)
	if err != nil {
		return err
	}
	return writeJSON(rc, 200, k)
}

// updateKey serves PATCH /api/v1/keys/{id} (tenant admins, platform
// admins): the key's name and own rate limits. Every replica applies the
// new limits from the key's next request (the key cache is invalidated).
func (s *Server) updateKey(rc *fasthttp.RequestCtx, st *reqState) error {
	p := st.principal
	if err := requireRole(p, tenancy.RoleTenantAdmin); err != nil {
		return err
	}
	k, err := s.keyInScope(rc, p)
	if err != nil {
		return err
	}
	var in tenancy.KeyUpdate
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	if k, err = s.platform.UpdateKey(s.ctx, k.TenantID, k.ID, in); err != nil {
		return err
	}
	return writeJSON(rc, 200, k)
}

// revokeKey serves DELETE /api/v1/keys/{id}.
func (s *Server) revokeKey(rc *fasthttp.RequestCtx, st *reqState) error {
	k, err := s.keyInScope(rc, st.principal)
	if err != nil {
		return err
	}
	if err := s.platform.RevokeKey(s.ctx, k.TenantID, k.ID); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// listUsers serves GET /api/v1/admin/users: a tenant admin's tenant, or
// (platform admins) every user or ?tenant=NAME.
func (s *Server) listUsers(rc *fasthttp.RequestCtx, st *reqState) error {
	p := st.principal
	if err := requireRole(p, tenancy.RoleTenantAdmin); err != nil {
		return err
	}
	limit, offset, err := page(rc)
	if err != nil {
		return err
	}
	name := string(rc.QueryArgs().Peek("tenant"))
	var (
		users []*tenancy.User
		total int
	)
	if p.Role == tenancy.RolePlatformAdmin && name == "" {
		users, total, err = s.platform.ListAllUsers(s.ctx, limit, offset)
	} else {
		var tenantID int64
		if tenantID, err = s.targetTenant(p, name); err == nil {
			users, total, err = s.platform.ListUsers(s.ctx, tenantID, limit, offset)
		}
	}
	if err != nil {
		return err
	}
	return writeList(rc, users, total, limit, offset)
}

// createUser serves POST /api/v1/admin/users.
func (s *Server) createUser(rc *fasthttp.RequestCtx, st *reqState) error {
	p := st.principal
	if err := requireRole(p, tenancy.RoleTenantAdmin); err != nil {
		return err
	}
	var in struct {
		Username string       `json:"username"`
		Password string       `json:"password"`
		Role     tenancy.Role `json:"role"`
		Tenant   string       `json:"tenant"`
	}
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = tenancy.RoleMember
	}
	if !p.Role.AtLeast(in.Role) {
		return fmt.Errorf("%w: you cannot grant the %s role", tenancy.ErrForbidden, in.Role)
	}
	tenantID, err := s.targetTenant(p, in.Tenant)
	if err != nil {
		return err
	}
	u, err := s.platform.CreateUser(s.ctx, tenantID, in.Username, in.Password, in.Role)
	if err != nil {
		return err
	}
	return writeJSON(rc, 201, u)
}

// userInScope finds user {id} where the caller may manage it.
func (s *Server) userInScope(rc *fasthttp.RequestCtx, p *tenancy.Principal) (*tenancy.User, error) {
	if err := requireRole(p, tenancy.RoleTenantAdmin); err != nil {
		return nil, err
	}
	id, err := idParam(rc)
	if err != nil {
		return nil, err
	}
	tenantID, err := s.targetTenant(p, string(rc.QueryArgs().Peek("tenant")))
	if err != nil {
		return nil, err
	}
	return s.platform.GetUser(s.ctx, tenantID, id)
}

// getUser serves GET /api/v1/admin/users/{id}.
func (s *Server) getUser(rc *fasthttp.RequestCtx, st *reqState) error {
	u, err := s.userInScope(rc, st.principal)
	if err != nil {
		return err
	}
	return writeJSON(rc, 200, u)
}

// updateUser serves PUT /api/v1/admin/users/{id}: role, disabled, password.
func (s *Server) updateUser(rc *fasthttp.RequestCtx, st *reqState) error {
	p := st.principal
	u, err := s.userInScope(rc, p)
	if err != nil {
		return err
	}
	var in tenancy.UserUpdate
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	if in.Role != nil && !p.Role.AtLeast(*in.Role) {
		return fmt.Errorf("%w: you cannot grant the %s role", tenancy.ErrForbidden, *in.Role)
	}
	if !p.Role.AtLeast(u.Role) {
		return fmt.Errorf("%w: you cannot change a %s", tenancy.ErrForbidden, u.Role)
	}
	u, err = s.platform.UpdateUser(s.ctx, u.TenantID, u.ID, in)
	if err != nil {
		return err
	}
	return writeJSON(rc, 200, u)
}
