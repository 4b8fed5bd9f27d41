package gateway

import "github.com/fasthttp/router"

// ragRoutes registers the RAG document API (/api/v1/rag/...).
func (s *Server) ragRoutes(r *router.Router) {}
