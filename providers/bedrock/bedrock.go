// Package bedrock is the adapter for Amazon Bedrock's Converse API
// (Converse and ConverseStream, through aws-sdk-go-v2's bedrockruntime
// client): OpenAI chat requests are translated into Converse input, and
// Converse answers and stream events back into OpenAI completions and
// chunks, with usage from the stream's metadata event, stop reasons mapped
// (FinishReason) and AWS errors turned into *providers.UpstreamError
// (ThrottlingException → 429, ValidationException → 400,
// ServiceUnavailableException and ModelNotReadyException → 503,
// AccessDeniedException → 403, ...).
//
// Credentials come from the standard AWS chain (environment, shared config
// and credentials files, SSO, web identity, ECS and EC2 roles), or from a
// Bedrock API key (the deployment's api_key, sent as a bearer token).
package bedrock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/schemas"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/auth/bearer"
	"github.com/aws/smithy-go/middleware"
	"github.com/aws/smithy-go/transport/http/protocol/restjson1"

	"github.com/mtai-dev/mtai/providers"
)

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Stream   = (*stream)(nil)
)

// Option changes a Client built by New.
type Option func(*options)

type options struct {
	region    string
	awsConfig *aws.Config
	http      aws.HTTPClient
	maxTokens int32
	now       func() time.Time
}

// WithRegion sets the AWS region, before any region found in the base URL
// or the AWS configuration.
func WithRegion(region string) Option { return func(o *options) { o.region = region } }

// WithAWSConfig uses cfg (credentials, region, ...) instead of loading the
// default configuration chain.
func WithAWSConfig(cfg aws.Config) Option { return func(o *options) { o.awsConfig = &cfg } }

// WithHTTPClient replaces the HTTP client (a proxy, a test server's TLS
// client); the deployment's timeout and connection cap are then the
// client's business.
func WithHTTPClient(c aws.HTTPClient) Option { return func(o *options) { o.http = c } }

// WithDefaultMaxTokens sets the maxTokens sent when a request has none;
// 0 (the default) sends none and lets the model use its own default.
func WithDefaultMaxTokens(n int) Option { return func(o *options) { o.maxTokens = int32(max(n, 0)) } }

// WithClock sets the clock that stamps "created"; default time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Client calls one Bedrock deployment. It is safe for concurrent use.
type Client struct {
	name      string
	model     string
	rt        *bedrockruntime.Client
	maxTokens int32
	now       func() time.Time
}

// New returns a client for deployment d (provider bedrock):
//
//   - d.Model is the model id or inference profile (ARN or id), e.g.
//     "anthropic.claude-3-5-haiku-20241022-v1:0" or "us.anthropic.claude-sonnet-4-20250514-v1:0";
//   - d.BaseURL is optional: https://bedrock-runtime.REGION.amazonaws.com
//     sets the region too; any other URL (a VPC endpoint, a proxy, a fake)
//     is used as the endpoint;
//   - the region is, in order: WithRegion, the base URL's, the AWS
//     configuration's (AWS_REGION, AWS_DEFAULT_REGION, the profile);
//     New fails without one;
//   - d.APIKey, when set, is a Bedrock API key sent as a bearer token
//     (HTTPS only) instead of SigV4 credentials;
//   - d.Timeout bounds the silence before the answer's headers and between
//     two reads of a stream; d.MaxConns caps the connections.
//
// The SDK's own retries are off: the router retries and falls back.
func New(d providers.DeploymentConfig, opts ...Option) (*Client, error) {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	var cfg aws.Config
	if o.awsConfig != nil {
		cfg = *o.awsConfig
	} else {
		var err error
		cfg, err = config.LoadDefaultConfig(context.Background())
		if err != nil {
			return nil, fmt.Errorf("deployment %s: loading the AWS configuration: %w", d.Name, err)
		}
	}
	var endpoint string
	region := o.region
	if d.BaseURL != "" {
		u, err := url.Parse(strings.TrimRight(d.BaseURL, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("deployment %s: base_url %q is not an http(s) URL", d.Name, d.BaseURL)
		}
		endpoint = u.Scheme + "://" + u.Host + u.Path
		if region == "" {
			region = RegionFromURL(u.Hostname())
		}
	}
	if region == "" {
		region = cfg.Region
	}
	if region == "" {
		return nil, fmt.Errorf("deployment %s: no AWS region: set AWS_REGION, or a base_url such as https://bedrock-runtime.us-east-1.amazonaws.com", d.Name)
	}
	hc := o.http
	if hc == nil {
		hc = newHTTPClient(d.Timeout, d.MaxConns)
	}
	hc = plainBodies{hc}
	c := &Client{name: d.Name, model: d.Model, maxTokens: o.maxTokens, now: o.now}
	c.rt = bedrockruntime.NewFromConfig(cfg, func(bo *bedrockruntime.Options) {
		bo.Region = region
		if endpoint != "" {
			bo.BaseEndpoint = aws.String(endpoint)
		}
		bo.HTTPClient = hc
		bo.Retryer = aws.NopRetryer{}
		if d.APIKey != "" {
			bo.BearerAuthTokenProvider = bearer.StaticTokenProvider{Token: bearer.Token{Value: d.APIKey}}
			bo.AuthSchemePreference = []string{"httpBearerAuth"}
		}
	})
	return c, nil
}

// RegionFromURL returns the region of a Bedrock runtime host name such as
// bedrock-runtime.eu-west-1.amazonaws.com (or -fips), "" for other hosts.
func RegionFromURL(host string) string {
	rest, ok := strings.CutPrefix(host, "bedrock-runtime.")
	if !ok {
		rest, ok = strings.CutPrefix(host, "bedrock-runtime-fips.")
	}
	if !ok {
		return ""
	}
	region, tail, ok := strings.Cut(rest, ".")
	if !ok || !strings.HasPrefix(tail, "amazonaws.com") {
		return ""
	}
	return region
}

func newHTTPClient(timeout time.Duration, maxConns int) aws.HTTPClient {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if maxConns > 0 {
			tr.MaxConnsPerHost = maxConns
			tr.MaxIdleConnsPerHost = min(maxConns, 256)
		}
		tr.ResponseHeaderTimeout = timeout
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: conn, timeout: timeout}, nil
		}
	})
}

// plainBodies hides the io.WriterTo of request bodies. smithy-go wraps a
// request body in a closer whose WriteTo returns io.EOF once closed, and it
// closes the body as soon as the response headers arrive; when that happens
// before net/http's writer made its last check for extra body bytes (which
// goes through WriteTo), the writer fails with io.EOF and tears down the
// connection under the streaming response ("use of closed network
// connection" a few events into a ConverseStream). Through Read the closed
// body just reads as EOF.
type plainBodies struct{ aws.HTTPClient }

func (p plainBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = readCloser{r.Body}
	}
	return p.HTTPClient.Do(r)
}

type readCloser struct{ io.ReadCloser }

// idleConn bounds the silence between two reads, like nginx's proxy_read_timeout.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

func (c *Client) translate(r *providers.Request) (*converse, string, error) {
	model := r.Model
	if model == "" {
		model = c.model
	}
	conv, err := fromOpenAI(r.Body, c.maxTokens)
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return nil, "", &providers.UpstreamError{Provider: "bedrock", Deployment: c.name, Status: 400,
				Type: "invalid_request_error", Message: re.Message}
		}
		return nil, "", err
	}
	return conv, model, nil
}

// Complete implements providers.Provider with Converse.
func (c *Client) Complete(ctx context.Context, r *providers.Request) (*providers.Response, error) {
	conv, model, err := c.translate(r)
	if err != nil {
		return nil, err
	}
	out, err := c.rt.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: &model, Messages: conv.messages,
		System: conv.system, InferenceConfig: conv.inference, ToolConfig: conv.tools})
	if err != nil {
		return nil, c.upstreamError(err)
	}
	var msg *types.Message
	if m, ok := out.Output.(*types.ConverseOutputMemberMessage); ok {
		msg = &m.Value
	}
	u := usageOf(out.Usage)
	body, err := responseToOpenAI(completionID(out.ResultMetadata), c.now().Unix(), model, msg, out.StopReason, u)
	if err != nil {
		return nil, &providers.UpstreamError{Provider: "bedrock", Deployment: c.name, Status: 502,
			Message: "the upstream's answer cannot be translated: " + err.Error()}
	}
	return providers.NewResponse(body, u, nil), nil
}

// completionID is "chatcmpl-" and Bedrock's request id.
func completionID(md middleware.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	if id == "" {
		id = "bedrock"
	}
	return "chatcmpl-" + id
}

// Stream implements providers.Provider with ConverseStream. It reads the
// stream up to its first chunk before returning, so that an exception sent
// at once is an error the router can still retry elsewhere.
func (c *Client) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	conv, model, err := c.translate(r)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	out, err := c.rt.ConverseStream(sctx, &bedrockruntime.ConverseStreamInput{ModelId: &model, Messages: conv.messages,
		System: conv.system, InferenceConfig: conv.inference, ToolConfig: conv.tools}, ownProtocol)
	if err != nil {
		cancel()
		return nil, c.upstreamError(err)
	}
	s := &stream{c: c, es: out.GetStream(), cancel: cancel, stop: make(chan struct{}),
		w: newChunker(completionID(out.ResultMetadata), c.now().Unix(), model)}
	if err := s.prime(); err != nil {
		s.Close(err)
		return nil, err
	}
	return s, nil
}

// ownProtocol gives one ConverseStream call a protocol of its own: the
// SDK's protocol keeps one event-stream decoder and payload buffer per
// client, shared by every stream (a data race under concurrent streams in
// bedrockruntime v1.63 / smithy-go v1.28; found by TestConcurrent -race).
func ownProtocol(o *bedrockruntime.Options) {
	o.Protocol = restjson1.New(schemas.AmazonBedrockFrontendService)
}

// statusOf maps an AWS error name to the HTTP status the gateway reasons
// with; httpStatus (the answer's, 0 inside a stream) is the fallback.
func statusOf(code string, httpStatus int) int {
	switch strings.ToLower(code) {
	case "throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception":
		return 429
	case "validationexception":
		return 400
	case "serviceunavailableexception", "modelnotreadyexception":
		return 503
	case "accessdeniedexception":
		return 403
	case "resourcenotfoundexception":
		return 404
	case "modeltimeoutexception":
		return 408
	case "modelerrorexception", "modelstreamerrorexception":
		return 424
	case "internalserverexception":
		return 500
	case "unrecognizedclientexception", "invalidsignatureexception", "expiredtokenexception",
		"invalidclienttokenidexception", "missingauthenticationtokenexception":
		return 401 // the deployment's credentials (AWS answers 403): not the request's fault
	}
	if httpStatus == 0 {
		return 500
	}
	return httpStatus
}

// openAIError gives OpenAI's error type and code for a status.
func openAIError(status int) (typ, code string) {
	switch status {
	case 400:
		return "invalid_request_error", ""
	case 401:
		return "invalid_request_error", "invalid_api_key"
	case 403:
		return "invalid_request_error", "permission_denied"
	case 404:
		return "invalid_request_error", "model_not_found"
	case 408:
		return "server_error", "upstream_timeout"
	case 429:
		return "requests", "rate_limit_exceeded"
	case 503:
		return "server_error", "upstream_overloaded"
	}
	return "server_error", "upstream_error"
}

// upstreamError turns an SDK error into a *providers.UpstreamError.
func (c *Client) upstreamError(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		httpStatus := 0
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			httpStatus = re.HTTPStatusCode()
		}
		status := statusOf(api.ErrorCode(), httpStatus)
		typ, code := openAIError(status)
		msg := api.ErrorMessage()
		if msg == "" {
			msg = api.ErrorCode()
		}
		return &providers.UpstreamError{Provider: "bedrock", Deployment: c.name, Status: status, Type: typ, Code: code, Message: msg}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("%w: %v", providers.ErrTimeout, err)
	}
	return &providers.UpstreamError{Provider: "bedrock", Deployment: c.name, Err: err}
}

// stream hands out the OpenAI chunks of a ConverseStream.
type stream struct {
	c      *Client
	es     *bedrockruntime.ConverseStreamEventStream
	cancel context.CancelFunc
	w      *chunker

	pending []byte // the first chunk, read by prime
	done    bool

	stop      chan struct{}
	closeOnce sync.Once
}

var errClosed = errors.New("bedrock stream closed")

func (s *stream) prime() error {
	for {
		chunk, err := s.next()
		if err == io.EOF {
			return &providers.UpstreamError{Provider: "bedrock", Deployment: s.c.name, Err: io.ErrUnexpectedEOF,
				Message: "stream ended before any event"}
		}
		if err != nil {
			return err
		}
		if s.w.failed { // an exception before any chunk: report it as an error
			return s.w.exception
		}
		if chunk != nil {
			s.pending = chunk
			return nil
		}
	}
}

// Next implements providers.Stream. It is not safe to call Next from two
// goroutines; Close may be called from any goroutine at any time.
func (s *stream) Next() ([]byte, error) {
	select {
	case <-s.stop:
		return nil, errClosed
	default:
	}
	if p := s.pending; p != nil {
		s.pending = nil
		return p, nil
	}
	for {
		chunk, err := s.next()
		if err != nil || chunk != nil {
			return chunk, err
		}
	}
}

// next waits for one event and returns its chunk (nil when it has none).
func (s *stream) next() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	select {
	case <-s.stop:
		return nil, errClosed
	case ev, ok := <-s.es.Events():
		if !ok {
			return s.end()
		}
		chunk, err := s.w.event(ev)
		if err != nil {
			s.done = true
			return nil, &providers.UpstreamError{Provider: "bedrock", Deployment: s.c.name, Err: err, Message: "malformed stream event"}
		}
		if s.w.finished {
			s.done = true
		}
		return chunk, nil
	}
}

// end handles the end of the events: an exception becomes an OpenAI error
// payload (then EOF); a stream cut before its end is an error.
func (s *stream) end() ([]byte, error) {
	s.done = true
	select {
	case <-s.stop:
		return nil, errClosed
	default:
	}
	if err := s.es.Err(); err != nil {
		ue, ok := s.c.upstreamError(err).(*providers.UpstreamError)
		if !ok || ue.Status == 0 {
			return nil, s.c.upstreamError(err)
		}
		return s.w.error(ue), nil
	}
	return nil, &providers.UpstreamError{Provider: "bedrock", Deployment: s.c.name, Err: io.ErrUnexpectedEOF,
		Message: "stream ended before its metadata event"}
}

// Close implements providers.Stream: it ends a blocked Next at once and
// cancels the upstream request; calls after the first do nothing.
func (s *stream) Close(error) {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
		_ = s.es.Close()
	})
}
