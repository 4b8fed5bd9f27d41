package admin

import (
	"embed"
	"io/fs"
)

//go:embed web
var web embed.FS

// Assets returns the dashboard's files (index.html, app.js, app.css): a
// page that signs in with /api/v1/auth/login and draws what
// /api/v1/admin/stats and /api/v1/admin/usage answer, and manages tenants
// and keys through /api/v1/tenants and /api/v1/keys. No build step, no
// CDN: vanilla JavaScript and inline SVG.
func Assets() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded directory is there at compile time
	}
	return sub
}
