package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
)

// Parse fills cfg (a pointer to Ingest, Writer, AllInOne or one of their parts) from environ;
// nil means the process environment. It does not validate. Every error names the variable and
// the value it was given (a secret only by name), all of them at once.
//
// caarlos0/env names the Go field in its errors (MaxBatch, and Password is in three structs), so
// each variable is parsed on its own: a one-field struct with the field's type and tags, whose
// error is that variable's.
func Parse(cfg any, environ map[string]string) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Parse: %T is not a pointer to a struct", cfg)
	}
	if environ == nil {
		environ = processEnviron()
	}
	if err := errors.Join(parseFields(v.Elem(), "", environ)...); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return nil
}

func processEnviron() map[string]string {
	environ := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	return environ
}

// parseFields fills the fields of the struct v that have an env tag, and those of the structs
// without one that it holds (with their envPrefix), as caarlos0/env does.
func parseFields(v reflect.Value, prefix string, environ map[string]string) []error {
	var errs []error
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		tag, ok := f.Tag.Lookup("env")
		if !ok {
			if f.Type.Kind() == reflect.Struct {
				errs = append(errs, parseFields(v.Field(i), prefix+f.Tag.Get("envPrefix"), environ)...)
			}
			continue
		}
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: f.Type, Tag: f.Tag}}))
		opts := env.Options{Environment: environ, Prefix: prefix, FuncMap: map[reflect.Type]env.ParserFunc{}}
		t := valueType(f.Type)
		if parse := parserOf(t); parse != nil {
			opts.FuncMap[t] = parse
		}
		if err := env.ParseWithOptions(one.Interface(), opts); err != nil {
			name, options, _ := strings.Cut(tag, ",")
			errs = append(errs, variableError(prefix+name, options, f, environ, err))
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
	return errs
}

// valueType is the type a variable's value (or each item of its list) is parsed into.
func valueType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// badValue is a value, or an item of a list, that a parser refused, and why in a user's words.
type badValue struct {
	value   string
	problem string // "is not a whole number"
}

func (e *badValue) Error() string { return fmt.Sprintf("%q %s", e.value, e.problem) }

// parserOf parses t's kind as caarlos0/env does, with errors that say what was wanted; nil
// leaves t to caarlos0/env (strings). A type with UnmarshalText (slog.Level) parses itself.
func parserOf(t reflect.Type) env.ParserFunc {
	as := func(x any) any { return reflect.ValueOf(x).Convert(t).Interface() }
	if t == reflect.TypeOf(time.Duration(0)) {
		return func(s string) (any, error) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, &badValue{s, "is not a duration such as 90s, 15m or 24h"}
			}
			return d, nil
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return func(s string) (any, error) {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, &badValue{s, "is not true or false"}
			}
			return as(b), nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		if t.Kind() == reflect.Int {
			bits = 32 // as caarlos0/env reads it, on every platform
		}
		return func(s string) (any, error) {
			i, err := strconv.ParseInt(s, 10, bits)
			switch {
			case errors.Is(err, strconv.ErrRange) && strings.HasPrefix(s, "-"):
				return nil, &badValue{s, fmt.Sprintf("is too small: at least %d", int64(-1)<<(bits-1))}
			case errors.Is(err, strconv.ErrRange):
				return nil, &badValue{s, fmt.Sprintf("is too large: at most %d", int64(1)<<(bits-1)-1)}
			case err != nil:
				return nil, &badValue{s, "is not a whole number"}
			}
			return as(i), nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := t.Bits()
		if t.Kind() == reflect.Uint {
			bits = 32
		}
		return func(s string) (any, error) {
			u, err := strconv.ParseUint(s, 10, bits)
			switch {
			case errors.Is(err, strconv.ErrRange):
				return nil, &badValue{s, fmt.Sprintf("is too large: at most %d", ^uint64(0)>>(64-bits))}
			case err != nil:
				return nil, &badValue{s, "is not a whole number of 0 or more"}
			}
			return as(u), nil
		}
	case reflect.Float32, reflect.Float64:
		return func(s string) (any, error) {
			f, err := strconv.ParseFloat(s, t.Bits())
			if err != nil {
				return nil, &badValue{s, "is not a number"}
			}
			return as(f), nil
		}
	}
	return nil
}

// variableError says what is wrong with variable in the user's words: its name and value, the
// bad item of a list in its list. A secret's value is never shown, nor a file's content.
func variableError(variable, options string, f reflect.StructField, environ map[string]string, err error) error {
	var all env.AggregateError
	if errors.As(err, &all) && len(all.Errors) == 1 {
		err = all.Errors[0]
	}
	var parse env.ParseError
	if errors.As(err, &parse) {
		err = parse.Err
	}
	var bad *badValue
	if !errors.As(err, &bad) {
		switch e := err.(type) {
		case env.EnvVarIsNotSetError:
			return fmt.Errorf("%s is not set", variable)
		case env.EmptyEnvVarError:
			return fmt.Errorf("%s is empty", variable)
		case env.LoadFileContentError:
			return fmt.Errorf("%s: the file %q cannot be read: %w", variable, e.Filename, e.Err)
		}
		if secret(variable) || fromFile(options) {
			return fmt.Errorf("%s: its value cannot be read as %s", variable, f.Type)
		}
		return fmt.Errorf("%s: %q cannot be read as %s: %w", variable, environ[variable], f.Type, err)
	}
	value := fmt.Sprintf("%q", bad.value)
	if list, ok := environ[variable]; ok && list != bad.value && f.Type.Kind() == reflect.Slice {
		value = fmt.Sprintf("%q (in %q)", bad.value, list)
	}
	switch {
	case fromFile(options):
		value = fmt.Sprintf("the content of %q", environ[variable])
	case secret(variable):
		value = "its value"
	}
	return fmt.Errorf("%s: %s %s", variable, value, bad.problem)
}

// fromFile is whether a variable's env options read its value from the file it names.
func fromFile(options string) bool {
	return strings.Contains(","+options+",", ",file,")
}

// secret is whether a variable holds a secret, whose value no error shows: a password, a
// secret, a token or a key, or a URL (which may hold a password). By name, so that a variable
// added later is covered when it is named as these are.
func secret(variable string) bool {
	if strings.Contains(variable, "PASSWORD") || strings.Contains(variable, "SECRET") {
		return true
	}
	for _, suffix := range []string{"_TOKEN", "_TOKENS", "_KEY", "_KEYS", "_URL", "_URLS"} {
		if strings.HasSuffix(variable, suffix) {
			return true
		}
	}
	return false
}
