package tenantapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// static holds the report page and its script: embedded in the binary, no CDN.
//
//go:embed static
var static embed.FS

// servePage serves the report page's shell. It is public: it holds no data,
// and asks the user for a token with which it calls the API.
func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.ServeFileFS(w, r, static, "static/index.html")
}

func staticFiles() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}
