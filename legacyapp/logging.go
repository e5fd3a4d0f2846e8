package legacyapp

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// routeUnmatched labels requests that match no route.
const routeUnmatched = "unmatched"

// logRequests logs one line per request: method, route template, status
// and duration. It never logs the raw path, headers or cookies.
func (a *App) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := routeUnmatched
		if cur := mux.CurrentRoute(r); cur != nil {
			if tpl, err := cur.GetPathTemplate(); err == nil {
				route = tpl
			}
		}
		a.serveLogged(w, r, next, route)
	})
}

// logUnmatched logs the requests h answers under the route "unmatched":
// mux runs no middleware when no route matches.
func (a *App) logUnmatched(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.serveLogged(w, r, h, routeUnmatched)
	})
}

func (a *App) serveLogged(w http.ResponseWriter, r *http.Request, h http.Handler, route string) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	h.ServeHTTP(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	level := slog.LevelInfo
	if status >= http.StatusInternalServerError {
		level = slog.LevelWarn
	}
	a.log.LogAttrs(r.Context(), level, "request",
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
	)
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= http.StatusOK { // 1xx are informational
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
