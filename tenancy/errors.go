package tenancy

// ValidationError reports an input that breaks a rule of the domain. Field is
// the JSON name of the offending field as documented in api-v1.md (for nested
// fields, dotted: "rag.top_k"); the HTTP layer answers 400
// invalid_request_error with param = Field. Find it with errors.As.
type ValidationError struct {
	// Field is the JSON name of the field at fault, e.g. "name".
	Field string
	// Message says what is wrong, for a human: "must be 1 to 63 characters".
	Message string
}

// Error implements error as "field: message".
func (e *ValidationError) Error() string {
	return e.Field + ": " + e.Message
}

// invalid builds a *ValidationError.
func invalid(field, msg string) error {
	return &ValidationError{Field: field, Message: msg}
}
