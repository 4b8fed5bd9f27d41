package gateway

// Meter receives one usage event per finished request. The metering
// capability defines what it records; nil means no metering.
type Meter interface{}

// meter hands the finished request's usage to the meter. It must never
// block: it is called on the request path, from finish.
func (s *Server) meter(st *reqState) {}
