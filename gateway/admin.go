package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/tenancy"
)

// The admin API (/api/v1/admin/stats, /api/v1/admin/usage) and the admin
// dashboard (/admin, static files embedded in package admin). Platform
// admins see every tenant; tenant admins see their own tenant only
// (another tenant is 404); members are refused.

// Admin answers statistics and usage queries. *admin.Service implements it.
type Admin interface {
	Stats(ctx context.Context, f admin.Filter, tenant string) (*admin.Stats, error)
	Usage(ctx context.Context, q admin.Query) ([]admin.Row, error)
}

var _ Admin = (*admin.Service)(nil)

// maxAdminPeriod caps the period of one admin query.
const maxAdminPeriod = 400 * 24 * time.Hour

// errAdminNotConfigured answers the admin API of a server built without
// Options.Admin.
var errAdminNotConfigured = &requestError{status: fasthttp.StatusNotImplemented, code: "not_implemented",
	message: "Usage analytics are not configured on this server."}

// adminCSP keeps the dashboard's requests on this origin; its scripts and
// styles are files (no inline code), its charts inline SVG.
const adminCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// adminRoutes registers the admin API (with the platform API) and the
// dashboard.
func (s *Server) adminRoutes(r *router.Router) {
	if s.platform != nil {
		r.GET("/api/v1/admin/stats", s.v1api("admin", s.adminStats, true))
		r.GET("/api/v1/admin/usage", s.v1api("admin", s.adminUsage, true))
	}
	assets := admin.Assets()
	serve := func(rc *fasthttp.RequestCtx, name string) {
		body, err := fs.ReadFile(assets, name)
		if err != nil || strings.Contains(name, "..") {
			writeError(rc, fmt.Errorf("%w: no file %q in the dashboard", errNotFound, name))
			return
		}
		rc.SetContentType(adminContentType(name))
		rc.Response.Header.Set("Cache-Control", "no-cache")
		rc.Response.Header.Set("Content-Security-Policy", adminCSP)
		rc.Response.Header.Set("X-Content-Type-Options", "nosniff")
		rc.Response.Header.Set("Referrer-Policy", "no-referrer")
		rc.SetBody(body)
	}
	r.GET("/admin", func(rc *fasthttp.RequestCtx) { serve(rc, "index.html") })
	r.GET("/admin/{filepath:*}", func(rc *fasthttp.RequestCtx) {
		name, _ := rc.UserValue("filepath").(string)
		if name == "" {
			name = "index.html"
		}
		serve(rc, name)
	})
}

func adminContentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}

// adminFilter reads the period (from, to), tenant and model of an admin
// query and checks that the caller may see them.
func (s *Server) adminFilter(rc *fasthttp.RequestCtx, p *tenancy.Principal) (admin.Filter, string, error) {
	var f admin.Filter
	if s.admin == nil {
		return f, "", errAdminNotConfigured
	}
	if err := requireRole(p, tenancy.RoleTenantAdmin); err != nil {
		return f, "", err
	}
	args := rc.QueryArgs()
	now := s.now().UTC()
	to := now.Truncate(time.Hour).Add(time.Hour) // the current hour included
	if v := args.Peek("to"); len(v) > 0 {
		t, err := parseAdminTime(string(v))
		if err != nil {
			return f, "", invalid("to", "'to' must be an RFC 3339 time or a date (YYYY-MM-DD).")
		}
		to = ceilHour(t)
	}
	from := to.Add(-24 * time.Hour)
	if v := args.Peek("from"); len(v) > 0 {
		t, err := parseAdminTime(string(v))
		if err != nil {
			return f, "", invalid("from", "'from' must be an RFC 3339 time or a date (YYYY-MM-DD).")
		}
		from = t.Truncate(time.Hour)
	}
	switch {
	case !from.Before(to):
		return f, "", invalid("from", "'from' must be before 'to'.")
	case to.Sub(from) > maxAdminPeriod:
		return f, "", invalid("from", "The period is at most 400 days.")
	}
	f.From, f.To = from, to
	f.Model = string(args.Peek("model"))
	name := string(args.Peek("tenant"))
	switch {
	case p.Role == tenancy.RolePlatformAdmin && name == "":
		f.AllTenants = true
	case name == "" || name == p.Tenant:
		f.TenantID, name = p.TenantID, p.Tenant
	case p.Role != tenancy.RolePlatformAdmin:
		// 404, not 403: a tenant admin cannot even learn that it exists
		return f, "", fmt.Errorf("%w: no tenant %q", tenancy.ErrNotFound, name)
	default:
		t, err := s.platform.GetTenantByName(s.ctx, name)
		if err != nil {
			return f, "", err
		}
		f.TenantID = t.ID
	}
	return f, name, nil
}

// parseAdminTime reads an RFC 3339 time or a date (midnight UTC).
func parseAdminTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Parse(time.DateOnly, v)
}

// ceilHour rounds t up to a whole hour.
func ceilHour(t time.Time) time.Time {
	h := t.Truncate(time.Hour)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return h
}

// adminErr turns the admin package's refusals into 400s.
func adminErr(err error) error {
	if errors.Is(err, admin.ErrInvalid) {
		return invalid("", strings.TrimPrefix(err.Error(), admin.ErrInvalid.Error()+": ")+".")
	}
	return err
}

// adminStats serves GET /api/v1/admin/stats.
func (s *Server) adminStats(rc *fasthttp.RequestCtx, st *reqState) error {
	f, tenant, err := s.adminFilter(rc, st.principal)
	if err != nil {
		return err
	}
	stats, err := s.admin.Stats(s.ctx, f, tenant)
	if err != nil {
		return adminErr(err)
	}
	return writeJSON(rc, 200, stats)
}

// adminUsage serves GET /api/v1/admin/usage, as JSON or CSV (format=csv).
func (s *Server) adminUsage(rc *fasthttp.RequestCtx, st *reqState) error {
	f, _, err := s.adminFilter(rc, st.principal)
	if err != nil {
		return err
	}
	args := rc.QueryArgs()
	q := admin.Query{Filter: f, Bucket: admin.Bucket(args.Peek("bucket"))}
	party := false
	for _, d := range strings.Split(string(args.Peek("group_by")), ",") {
		if d = strings.TrimSpace(d); d != "" {
			q.By = append(q.By, admin.Dimension(d))
			party = party || d == string(admin.ByKey) || d == string(admin.ByUser)
		}
	}
	switch {
	case q.Bucket != "":
	case party: // the top keys or users of the period
		q.Bucket = admin.BucketNone
	case f.To.Sub(f.From) > 72*time.Hour:
		q.Bucket = admin.BucketDay
	default:
		q.Bucket = admin.BucketHour
	}
	if v := args.Peek("limit"); len(v) > 0 {
		if q.Limit, err = strconv.Atoi(string(v)); err != nil || q.Limit < 1 || q.Limit > 1000 {
			return invalid("limit", "'limit' must be an integer from 1 to 1000.")
		}
	}
	format := string(args.Peek("format"))
	if format != "" && format != "json" && format != "csv" {
		return invalid("format", "'format' is json or csv.")
	}
	rows, err := s.admin.Usage(s.ctx, q)
	if err != nil {
		return adminErr(err)
	}
	if format == "csv" {
		var buf bytes.Buffer
		if err := admin.WriteCSV(&buf, rows); err != nil {
			return err
		}
		rc.SetStatusCode(200)
		rc.SetContentType("text/csv; charset=utf-8")
		rc.Response.Header.Set("Content-Disposition",
			fmt.Sprintf(`attachment; filename="mtai-usage-%s-%s.csv"`, f.From.Format("20060102T15"), f.To.Format("20060102T15")))
		rc.SetBody(buf.Bytes())
		return nil
	}
	if rows == nil {
		rows = []admin.Row{}
	}
	by := make([]string, len(q.By))
	for i, d := range q.By {
		by[i] = string(d)
	}
	return writeJSON(rc, 200, struct {
		Object  string       `json:"object"`
		From    time.Time    `json:"from"`
		To      time.Time    `json:"to"`
		Bucket  admin.Bucket `json:"bucket"`
		GroupBy []string     `json:"group_by"`
		Data    []admin.Row  `json:"data"`
	}{"list", f.From, f.To, q.Bucket, by, rows})
}
