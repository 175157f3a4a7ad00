/* textformat.c: protobuf text-format parser and printer over protobuf-c descriptors.
 *
 * The parser is a small hand-written lexer (tokens carry their line and column) and a
 * recursive-descent reader driven by the message descriptor. Values are stored straight
 * into the generated structs through the descriptor's offsets: `quantifier_offset` is
 * the has_ flag of an optional scalar or the n_ count of a repeated field, `offset` the
 * value or the array. Every allocation uses malloc so that
 * protobuf_c_message_free_unpacked(msg, NULL) releases a finished or half-built message;
 * a value is linked into its parent only once it is complete, so the struct is always
 * consistent for that free.
 */
#include "textformat.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------ */
/* Lexer                                                                                 */

enum { T_EOF, T_IDENT, T_NUM, T_STR, T_SYM };

typedef struct nr__lexer {
  const char *p, *end;    /* unread input */
  const char *file;
  int line, col;          /* position of *p */
  /* current token */
  int tok;
  const char *ts;         /* token text (for T_STR: including the quotes) */
  size_t tn;
  int tline, tcol;
  char sym;
  nr_error *err;
} nr__lexer;

__attribute__((format(printf, 4, 5)))
static nr_status lex_error(nr__lexer *L, int line, int col, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return nr_err_set(L->err, NR_ERR_INPUT, "%s:%d:%d: %s", L->file, line, col, msg);
}

static void lex_advance(nr__lexer *L) {
  if (*L->p == '\n') {
    L->line++;
    L->col = 1;
  } else {
    L->col++;
  }
  L->p++;
}

static int is_ident_start(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }

/* Reads the next token into L->tok. A string token is only delimited here (its escapes
 * are decoded when the parser needs the value), but an unterminated string or a byte
 * that cannot start any token is reported at once, so binary garbage fails at its
 * first bad byte. */
static nr_status lex_next(nr__lexer *L) {
  for (;;) {
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\t' || *L->p == '\n' ||
                             *L->p == '\r' || *L->p == '\f' || *L->p == '\v'))
      lex_advance(L);
    if (L->p < L->end && *L->p == '#') {
      while (L->p < L->end && *L->p != '\n') lex_advance(L);
      continue;
    }
    break;
  }
  L->ts = L->p;
  L->tline = L->line;
  L->tcol = L->col;
  if (L->p >= L->end) {
    L->tok = T_EOF;
    L->tn = 0;
    return NR_OK;
  }
  unsigned char c = (unsigned char)*L->p;
  if (is_ident_start(c)) {
    while (L->p < L->end && is_ident_char((unsigned char)*L->p)) lex_advance(L);
    L->tok = T_IDENT;
  } else if (is_digit(c) || (c == '.' && L->p + 1 < L->end && is_digit((unsigned char)L->p[1]))) {
    int hex = c == '0' && L->p + 1 < L->end && (L->p[1] == 'x' || L->p[1] == 'X');
    while (L->p < L->end) {
      unsigned char d = (unsigned char)*L->p;
      if (is_ident_char(d) || d == '.') {
        lex_advance(L);
      } else if ((d == '+' || d == '-') && !hex && (L->p[-1] == 'e' || L->p[-1] == 'E')) {
        lex_advance(L);
      } else {
        break;
      }
    }
    L->tok = T_NUM;
  } else if (c == '"' || c == '\'') {
    lex_advance(L);
    for (;;) {
      if (L->p >= L->end || *L->p == '\n')
        return lex_error(L, L->tline, L->tcol, "unterminated string (missing closing %c)", c);
      if (*L->p == '\\') {
        lex_advance(L);
        if (L->p >= L->end || *L->p == '\n')
          return lex_error(L, L->tline, L->tcol, "unterminated string (missing closing %c)", c);
        lex_advance(L);
        continue;
      }
      if ((unsigned char)*L->p == c) {
        lex_advance(L);
        break;
      }
      lex_advance(L);
    }
    L->tok = T_STR;
  } else if (strchr("{}<>:,;[]-/", c) && c != '\0') {
    L->sym = (char)c;
    lex_advance(L);
    L->tok = T_SYM;
  } else if (c >= 0x20 && c < 0x7f) {
    return lex_error(L, L->tline, L->tcol, "unexpected character '%c'", c);
  } else {
    return lex_error(L, L->tline, L->tcol,
                     "unexpected byte 0x%02x (not text; is this a binary file?)", c);
  }
  L->tn = (size_t)(L->p - L->ts);
  return NR_OK;
}

/* Describes the current token for "expected X, found Y" messages. */
static const char *tok_desc(const nr__lexer *L, char *buf, size_t n) {
  switch (L->tok) {
    case T_EOF: return "end of file";
    case T_SYM: snprintf(buf, n, "'%c'", L->sym); return buf;
    case T_STR: return "a string";
    default: {
      int len = L->tn > 40 ? 40 : (int)L->tn;
      snprintf(buf, n, "'%.*s%s'", len, L->ts, L->tn > 40 ? "..." : "");
      return buf;
    }
  }
}

static int tok_is(const nr__lexer *L, char sym) { return L->tok == T_SYM && L->sym == sym; }

static int tok_ident_eq(const nr__lexer *L, const char *s) {
  return L->tok == T_IDENT && strlen(s) == L->tn && memcmp(L->ts, s, L->tn) == 0;
}

/* ------------------------------------------------------------------------------------ */
/* Values                                                                                */

typedef struct nr__parser {
  nr__lexer L;
  const ProtobufCFieldDescriptor *field; /* field whose value is being read */
  const ProtobufCMessageDescriptor *msgdesc;
} nr__parser;

/* The text name of a schema field: the name without one trailing underscore. */
static size_t text_name_len(const char *name) {
  size_t n = strlen(name);
  return (n > 1 && name[n - 1] == '_') ? n - 1 : n;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *name, size_t n) {
  for (unsigned i = 0; i < d->n_fields; i++) {
    const char *fn = d->fields[i].name;
    if (text_name_len(fn) == n && memcmp(fn, name, n) == 0) return &d->fields[i];
  }
  return NULL;
}

static const char *type_name(ProtobufCType t) {
  switch (t) {
    case PROTOBUF_C_TYPE_INT32: return "int32";
    case PROTOBUF_C_TYPE_SINT32: return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
    case PROTOBUF_C_TYPE_INT64: return "int64";
    case PROTOBUF_C_TYPE_SINT64: return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32: return "uint32";
    case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
    case PROTOBUF_C_TYPE_UINT64: return "uint64";
    case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT: return "float";
    case PROTOBUF_C_TYPE_DOUBLE: return "double";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_ENUM: return "enum";
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE: return "message";
  }
  return "?";
}

/* Size of one element of a repeated field of this type inside the generated array. */
static size_t elem_size(ProtobufCType t) {
  switch (t) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
      return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
      return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  }
  return 0;
}

/* One parsed value, in the in-memory representation of its field type. Pointers are
 * owned by the value until stored. */
typedef union nr__val {
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  float f;
  double d;
  protobuf_c_boolean b;
  char *s;
  ProtobufCBinaryData bin;
  ProtobufCMessage *m;
} nr__val;

static void val_release(ProtobufCType t, nr__val *v) {
  if (t == PROTOBUF_C_TYPE_STRING) free(v->s);
  else if (t == PROTOBUF_C_TYPE_BYTES) free(v->bin.data);
  else if (t == PROTOBUF_C_TYPE_MESSAGE && v->m) protobuf_c_message_free_unpacked(v->m, NULL);
}

__attribute__((format(printf, 2, 3)))
static nr_status perr(nr__parser *P, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return lex_error(&P->L, P->L.tline, P->L.tcol, "%s", msg);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static size_t put_utf8(unsigned char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Decodes the escapes of the current string token, appending to buf (which has room:
 * a decoded string is never longer than its quoted text). */
static nr_status decode_string(nr__parser *P, unsigned char *buf, size_t *len) {
  const char *s = P->L.ts + 1, *e = P->L.ts + P->L.tn - 1;
  size_t n = *len;
  while (s < e) {
    if (*s != '\\') {
      buf[n++] = (unsigned char)*s++;
      continue;
    }
    int col = P->L.tcol + (int)(s - P->L.ts);
    s++;
    char c = *s++;
    switch (c) {
      case 'n': buf[n++] = '\n'; break;
      case 't': buf[n++] = '\t'; break;
      case 'r': buf[n++] = '\r'; break;
      case 'a': buf[n++] = '\a'; break;
      case 'b': buf[n++] = '\b'; break;
      case 'f': buf[n++] = '\f'; break;
      case 'v': buf[n++] = '\v'; break;
      case '\\': case '\'': case '"': case '?': buf[n++] = (unsigned char)c; break;
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        unsigned v = (unsigned)(c - '0');
        for (int k = 0; k < 2 && s < e && *s >= '0' && *s <= '7'; k++)
          v = v * 8 + (unsigned)(*s++ - '0');
        if (v > 255)
          return lex_error(&P->L, P->L.tline, col, "octal escape \\%o is larger than \\377", v);
        buf[n++] = (unsigned char)v;
        break;
      }
      case 'x': case 'X': {
        if (s >= e || hexval(*s) < 0)
          return lex_error(&P->L, P->L.tline, col, "\\x escape without hex digits");
        unsigned v = (unsigned)hexval(*s++);
        if (s < e && hexval(*s) >= 0) v = v * 16 + (unsigned)hexval(*s++);
        buf[n++] = (unsigned char)v;
        break;
      }
      case 'u': case 'U': {
        int digits = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int k = 0; k < digits; k++) {
          if (s >= e || hexval(*s) < 0)
            return lex_error(&P->L, P->L.tline, col, "\\%c escape needs %d hex digits", c, digits);
          cp = cp * 16 + (uint32_t)hexval(*s++);
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
          return lex_error(&P->L, P->L.tline, col,
                           "\\%c escape 0x%" PRIx32 " is not a Unicode scalar value", c, cp);
        n += put_utf8(buf + n, cp);
        break;
      }
      default:
        return lex_error(&P->L, P->L.tline, col, "unknown escape '\\%c' in string",
                         (c >= 0x20 && c < 0x7f) ? c : '?');
    }
  }
  *len = n;
  return NR_OK;
}

/* Reads one or more adjacent string tokens ("a" 'b' -> "ab") as a string or bytes value. */
static nr_status parse_string_value(nr__parser *P, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  char tb[64];
  if (P->L.tok != T_STR)
    return perr(P, "expected a quoted string for %s field '%.*s', found %s", type_name(f->type),
                (int)text_name_len(f->name), f->name, tok_desc(&P->L, tb, sizeof tb));
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0;
  nr_status s = NR_OK;
  int line = P->L.tline, col = P->L.tcol;
  while (P->L.tok == T_STR) {
    if (len + P->L.tn + 1 > cap) {
      size_t ncap = (len + P->L.tn + 1) * 2;
      unsigned char *nb = realloc(buf, ncap);
      if (!nb) {
        s = nr_err_set(P->L.err, NR_ERR_NOMEM, "out of memory reading a string");
        goto fail;
      }
      buf = nb;
      cap = ncap;
    }
    if ((s = decode_string(P, buf, &len)) != NR_OK) goto fail;
    if ((s = lex_next(&P->L)) != NR_OK) goto fail;
  }
  buf[len] = 0;
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    if (memchr(buf, 0, len)) {
      s = lex_error(&P->L, line, col, "string field '%.*s' contains a NUL byte",
                    (int)text_name_len(f->name), f->name);
      goto fail;
    }
    v->s = (char *)buf;
  } else {
    v->bin.len = len;
    v->bin.data = buf;
  }
  return NR_OK;
fail:
  free(buf);
  return s;
}

/* Copies the current number token into buf (NUL-terminated); errors if too long. */
static nr_status number_text(nr__parser *P, char *buf, size_t n) {
  if (P->L.tn >= n) return perr(P, "number too long (%zu characters)", P->L.tn);
  memcpy(buf, P->L.ts, P->L.tn);
  buf[P->L.tn] = 0;
  return NR_OK;
}

static nr_status parse_int_value(nr__parser *P, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  int fnl = (int)text_name_len(f->name);
  char tb[64], num[80];
  int neg = 0;
  int line = P->L.tline, col = P->L.tcol;
  if (tok_is(&P->L, '-')) {
    neg = 1;
    NR_TRY(lex_next(&P->L));
  }
  if (P->L.tok != T_NUM)
    return lex_error(&P->L, P->L.tline, P->L.tcol,
                     "expected an integer for %s field '%.*s', found %s", type_name(f->type), fnl,
                     f->name, tok_desc(&P->L, tb, sizeof tb));
  NR_TRY(number_text(P, num, sizeof num));
  errno = 0;
  char *end = NULL;
  unsigned long long mag = strtoull(num, &end, 0);
  if (*end != 0 || num[0] == '.')
    return perr(P, "expected an integer for %s field '%.*s', found '%s'", type_name(f->type), fnl,
                f->name, num);
  if (errno == ERANGE)
    return lex_error(&P->L, line, col, "integer %s%s out of range for %s field '%.*s'",
                     neg ? "-" : "", num, type_name(f->type), fnl, f->name);
  uint64_t m = (uint64_t)mag;
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
      if ((!neg && m > INT32_MAX) || (neg && m > (uint64_t)INT32_MAX + 1)) goto range;
      v->i32 = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
      break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
      if ((!neg && m > INT64_MAX) || (neg && m > (uint64_t)INT64_MAX + 1)) goto range;
      v->i64 = neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
      break;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
      if (neg && m != 0) goto negative;
      if (m > UINT32_MAX) goto range;
      v->u32 = (uint32_t)m;
      break;
    default: /* uint64, fixed64 */
      if (neg && m != 0) goto negative;
      v->u64 = m;
      break;
  }
  return lex_next(&P->L);
range:
  return lex_error(&P->L, line, col, "integer %s%s out of range for %s field '%.*s'",
                   neg ? "-" : "", num, type_name(f->type), fnl, f->name);
negative:
  return lex_error(&P->L, line, col, "negative value -%s for unsigned %s field '%.*s'", num,
                   type_name(f->type), fnl, f->name);
}

static nr_status parse_float_value(nr__parser *P, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  int fnl = (int)text_name_len(f->name);
  char tb[64], num[300];
  int neg = 0;
  double d;
  if (tok_is(&P->L, '-')) {
    neg = 1;
    NR_TRY(lex_next(&P->L));
  }
  if (P->L.tok == T_IDENT) {
    if ((P->L.tn == 3 && strncasecmp(P->L.ts, "inf", 3) == 0) ||
        (P->L.tn == 8 && strncasecmp(P->L.ts, "infinity", 8) == 0)) {
      d = INFINITY;
    } else if (P->L.tn == 3 && strncasecmp(P->L.ts, "nan", 3) == 0) {
      d = NAN;
    } else {
      return perr(P, "expected a number for %s field '%.*s', found %s", type_name(f->type), fnl,
                  f->name, tok_desc(&P->L, tb, sizeof tb));
    }
  } else if (P->L.tok == T_NUM) {
    NR_TRY(number_text(P, num, sizeof num));
    size_t n = strlen(num);
    int hex = n > 1 && num[0] == '0' && (num[1] == 'x' || num[1] == 'X');
    if (!hex && n > 1 && (num[n - 1] == 'f' || num[n - 1] == 'F')) num[--n] = 0;
    char *end = NULL;
    d = strtod(num, &end);
    if (*end != 0 || n == 0)
      return perr(P, "invalid number '%s' for %s field '%.*s'", num, type_name(f->type), fnl,
                  f->name);
  } else {
    return perr(P, "expected a number for %s field '%.*s', found %s", type_name(f->type), fnl,
                f->name, tok_desc(&P->L, tb, sizeof tb));
  }
  if (neg) d = -d;
  if (f->type == PROTOBUF_C_TYPE_FLOAT) v->f = (float)d;
  else v->d = d;
  return lex_next(&P->L);
}

static nr_status parse_bool_value(nr__parser *P, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  char tb[64];
  if (tok_ident_eq(&P->L, "true") || tok_ident_eq(&P->L, "True") || tok_ident_eq(&P->L, "t") ||
      (P->L.tok == T_NUM && P->L.tn == 1 && P->L.ts[0] == '1')) {
    v->b = 1;
  } else if (tok_ident_eq(&P->L, "false") || tok_ident_eq(&P->L, "False") ||
             tok_ident_eq(&P->L, "f") || (P->L.tok == T_NUM && P->L.tn == 1 && P->L.ts[0] == '0')) {
    v->b = 0;
  } else {
    return perr(P, "expected true or false for bool field '%.*s', found %s",
                (int)text_name_len(f->name), f->name, tok_desc(&P->L, tb, sizeof tb));
  }
  return lex_next(&P->L);
}

static nr_status parse_enum_value(nr__parser *P, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  const ProtobufCEnumDescriptor *ed = f->descriptor;
  int fnl = (int)text_name_len(f->name);
  char tb[64], name[128];
  if (P->L.tok == T_IDENT) {
    if (P->L.tn >= sizeof name)
      return perr(P, "unknown value %s for enum %s of field '%.*s'", tok_desc(&P->L, tb, sizeof tb),
                  ed->name, fnl, f->name);
    memcpy(name, P->L.ts, P->L.tn);
    name[P->L.tn] = 0;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
    if (!ev)
      return perr(P, "unknown value '%s' for enum %s of field '%.*s'", name, ed->name, fnl,
                  f->name);
    v->i32 = ev->value;
    return lex_next(&P->L);
  }
  if (P->L.tok == T_NUM || tok_is(&P->L, '-')) {
    int line = P->L.tline, col = P->L.tcol;
    const ProtobufCFieldDescriptor fake = {.name = f->name, .type = PROTOBUF_C_TYPE_INT32};
    P->field = &fake;
    nr_status s = parse_int_value(P, v);
    P->field = f;
    if (s != NR_OK) return s;
    if (!protobuf_c_enum_descriptor_get_value(ed, v->i32))
      return lex_error(&P->L, line, col, "%d is not a value of enum %s (field '%.*s')", (int)v->i32,
                       ed->name, fnl, f->name);
    return NR_OK;
  }
  return perr(P, "expected an enum value name for field '%.*s' (enum %s), found %s", fnl, f->name,
              ed->name, tok_desc(&P->L, tb, sizeof tb));
}

static nr_status parse_message_body(nr__parser *P, const ProtobufCMessageDescriptor *desc,
                                    ProtobufCMessage *msg, char closer, int oline, int ocol,
                                    int depth);

/* Reads `{ ... }` or `< ... >` into a new message of the field's type. */
static nr_status parse_message_value(nr__parser *P, nr__val *v, int depth) {
  const ProtobufCFieldDescriptor *f = P->field;
  const ProtobufCMessageDescriptor *sd = f->descriptor;
  char tb[64];
  if (!tok_is(&P->L, '{') && !tok_is(&P->L, '<'))
    return perr(P, "expected '{' to open message field '%.*s' (%s), found %s",
                (int)text_name_len(f->name), f->name, sd->name, tok_desc(&P->L, tb, sizeof tb));
  if (depth >= NR_TEXT_MAX_DEPTH)
    return perr(P, "message nesting deeper than %d levels", NR_TEXT_MAX_DEPTH);
  char closer = P->L.sym == '{' ? '}' : '>';
  int oline = P->L.tline, ocol = P->L.tcol;
  ProtobufCMessage *m = malloc(sd->sizeof_message);
  if (!m) return nr_err_set(P->L.err, NR_ERR_NOMEM, "out of memory");
  protobuf_c_message_init(sd, m);
  nr_status s = lex_next(&P->L);
  if (s == NR_OK) s = parse_message_body(P, sd, m, closer, oline, ocol, depth + 1);
  P->field = f;
  if (s != NR_OK) {
    protobuf_c_message_free_unpacked(m, NULL);
    return s;
  }
  v->m = m;
  return NR_OK;
}

static nr_status parse_value(nr__parser *P, nr__val *v, int depth) {
  memset(v, 0, sizeof *v);
  switch (P->field->type) {
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES: return parse_string_value(P, v);
    case PROTOBUF_C_TYPE_FLOAT: case PROTOBUF_C_TYPE_DOUBLE: return parse_float_value(P, v);
    case PROTOBUF_C_TYPE_BOOL: return parse_bool_value(P, v);
    case PROTOBUF_C_TYPE_ENUM: return parse_enum_value(P, v);
    case PROTOBUF_C_TYPE_MESSAGE: return parse_message_value(P, v, depth);
    default: return parse_int_value(P, v);
  }
}

/* Moves a parsed value into msg. On success the message owns the value; on failure
 * (out of memory growing a repeated array) the value is released here. */
static nr_status store_value(nr__parser *P, ProtobufCMessage *msg, nr__val *v) {
  const ProtobufCFieldDescriptor *f = P->field;
  char *base = (char *)msg;
  size_t es = elem_size(f->type);
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    size_t *n = (size_t *)(base + f->quantifier_offset);
    void **arr = (void **)(base + f->offset);
    /* Arrays grow to the next power of two when the count reaches one: the capacity is
     * implied by the count, so nothing extra is stored in the generated struct. */
    if (*n == 0 || (*n & (*n - 1)) == 0) {
      size_t cap = *n == 0 ? 1 : *n * 2;
      if (cap > SIZE_MAX / es) goto nomem;
      void *na = realloc(*arr, cap * es);
      if (!na) goto nomem;
      *arr = na;
    }
    memcpy((char *)*arr + *n * es, v, es);
    (*n)++;
    return NR_OK;
  }
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    *(uint32_t *)(base + f->quantifier_offset) = f->id;
  } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE && f->quantifier_offset) {
    *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
  }
  memcpy(base + f->offset, v, es);
  return NR_OK;
nomem:
  val_release(f->type, v);
  return nr_err_set(P->L.err, NR_ERR_NOMEM, "out of memory");
}

static nr_status parse_and_store(nr__parser *P, ProtobufCMessage *msg, int depth) {
  nr__val v;
  NR_TRY(parse_value(P, &v, depth));
  return store_value(P, msg, &v);
}

/* Reads `[v, v, ...]` for a repeated field (the '[' is the current token). */
static nr_status parse_list(nr__parser *P, ProtobufCMessage *msg, int depth) {
  char tb[64];
  int oline = P->L.tline, ocol = P->L.tcol;
  NR_TRY(lex_next(&P->L));
  if (tok_is(&P->L, ']')) return lex_next(&P->L);
  for (;;) {
    NR_TRY(parse_and_store(P, msg, depth));
    if (tok_is(&P->L, ']')) return lex_next(&P->L);
    if (!tok_is(&P->L, ','))
      return P->L.tok == T_EOF
                 ? perr(P,
                        "unexpected end of file: list opened at %d:%d is not closed (expected ']')",
                        oline, ocol)
                 : perr(P, "expected ',' or ']' in list, found %s", tok_desc(&P->L, tb, sizeof tb));
    NR_TRY(lex_next(&P->L));
  }
}

/* Reads fields until `closer` (0 = end of file). Each field: a name, then `: value`,
 * `: [list]`, or for messages an optional ':' and a block; an optional ',' or ';' may
 * follow. A non-repeated field seen twice is an error, as in protobuf's TextFormat. */
static nr_status parse_message_body(nr__parser *P, const ProtobufCMessageDescriptor *desc,
                                    ProtobufCMessage *msg, char closer, int oline, int ocol,
                                    int depth) {
  char tb[64];
  unsigned char seen[128] = {0}; /* non-repeated fields already set (first 1024 fields) */
  P->msgdesc = desc;
  for (;;) {
    if (P->L.tok == T_EOF) {
      if (closer == 0) return NR_OK;
      return perr(P, "unexpected end of file: block opened at %d:%d is not closed (expected '%c')",
                  oline, ocol, closer);
    }
    if (closer && tok_is(&P->L, closer)) return lex_next(&P->L);
    if (P->L.tok != T_IDENT) {
      if (tok_is(&P->L, '['))
        return perr(P, "extension and Any fields ('[...]') are not supported");
      if (closer == 0 && (tok_is(&P->L, '}') || tok_is(&P->L, '>')))
        return perr(P, "unexpected '%c' (no block is open)", P->L.sym);
      if (tok_is(&P->L, '}') || tok_is(&P->L, '>'))
        return perr(P, "mismatched '%c': block opened at %d:%d must be closed with '%c'", P->L.sym,
                    oline, ocol, closer);
      return perr(P, "expected a field name of %s, found %s", desc->name,
                  tok_desc(&P->L, tb, sizeof tb));
    }
    const ProtobufCFieldDescriptor *f = find_field(desc, P->L.ts, P->L.tn);
    if (!f)
      return perr(P, "unknown field '%.*s' in %s", (int)(P->L.tn > 80 ? 80 : P->L.tn), P->L.ts,
                  desc->name);
    unsigned idx = (unsigned)(f - desc->fields);
    int fnl = (int)text_name_len(f->name);
    if (f->label != PROTOBUF_C_LABEL_REPEATED && idx < 1024) {
      if (seen[idx / 8] & (1u << (idx % 8)))
        return perr(P, "field '%.*s' already set in %s (it is not repeated)", fnl, f->name,
                    desc->name);
      seen[idx / 8] |= (unsigned char)(1u << (idx % 8));
    }
    NR_TRY(lex_next(&P->L));
    P->field = f;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
      if (tok_is(&P->L, ':')) NR_TRY(lex_next(&P->L));
    } else {
      if (!tok_is(&P->L, ':'))
        return perr(P, "expected ':' after field name '%.*s', found %s", fnl, f->name,
                    tok_desc(&P->L, tb, sizeof tb));
      NR_TRY(lex_next(&P->L));
    }
    if (tok_is(&P->L, '[')) {
      if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return perr(P, "field '%.*s' is not repeated: a list '[...]' is not allowed", fnl, f->name);
      NR_TRY(parse_list(P, msg, depth));
    } else {
      NR_TRY(parse_and_store(P, msg, depth));
    }
    P->msgdesc = desc;
    if (tok_is(&P->L, ',') || tok_is(&P->L, ';')) NR_TRY(lex_next(&P->L));
  }
}

nr_status nr_text_parse(const char *text, size_t len, const char *filename,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                        nr_error *err) {
  nr__parser P;
  memset(&P, 0, sizeof P);
  P.L.p = text;
  P.L.end = text + len;
  P.L.file = filename ? filename : "<text>";
  P.L.line = 1;
  P.L.col = 1;
  P.L.err = err;
  ProtobufCMessage *msg = malloc(desc->sizeof_message);
  if (!msg) return nr_err_set(err, NR_ERR_NOMEM, "%s: out of memory", P.L.file);
  protobuf_c_message_init(desc, msg);
  nr_status s = lex_next(&P.L);
  if (s == NR_OK) s = parse_message_body(&P, desc, msg, 0, 1, 1, 0);
  if (s != NR_OK) goto fail;
  *out = msg;
  return NR_OK;
fail:
  protobuf_c_message_free_unpacked(msg, NULL);
  return s;
}

void nr_text_free(ProtobufCMessage *msg) {
  if (msg) protobuf_c_message_free_unpacked(msg, NULL);
}

/* ------------------------------------------------------------------------------------ */
/* Printer                                                                               */

typedef struct nr__sbuf {
  char *p;
  size_t n, cap;
  int oom;
} nr__sbuf;

static void sb_add(nr__sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(nr__sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void sb_fmt(nr__sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_indent(nr__sbuf *b, int depth) {
  for (int i = 0; i < depth; i++) sb_add(b, "  ", 2);
}

/* Shortest %g form with at most `maxprec` digits that converts back to the same value. */
static void fmt_real(char *out, size_t n, double d, int is_float) {
  if (isnan(d)) { snprintf(out, n, "nan"); return; }
  if (isinf(d)) { snprintf(out, n, d < 0 ? "-inf" : "inf"); return; }
  int maxprec = is_float ? 9 : 17;
  for (int prec = 1; prec <= maxprec; prec++) {
    snprintf(out, n, "%.*g", prec, d);
    if (is_float ? strtof(out, NULL) == (float)d : strtod(out, NULL) == d) return;
  }
  snprintf(out, n, "%.*g", maxprec, d);
}

static void print_quoted(nr__sbuf *b, const unsigned char *s, size_t n, int is_bytes) {
  sb_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    switch (c) {
      case '\n': sb_add(b, "\\n", 2); break;
      case '\r': sb_add(b, "\\r", 2); break;
      case '\t': sb_add(b, "\\t", 2); break;
      case '"': sb_add(b, "\\\"", 2); break;
      case '\'': sb_add(b, "\\'", 2); break;
      case '\\': sb_add(b, "\\\\", 2); break;
      default:
        if (c < 0x20 || c == 0x7f || (is_bytes && c >= 0x80)) sb_fmt(b, "\\%03o", c);
        else sb_add(b, (const char *)&c, 1);
    }
  }
  sb_add(b, "\"", 1);
}

static void print_message(nr__sbuf *b, const ProtobufCMessage *msg, int depth);

/* Prints one value of field f stored at p (a struct member or an array element). */
static void print_value(nr__sbuf *b, const ProtobufCFieldDescriptor *f, const void *p, int depth) {
  char num[64];
  int nl = (int)text_name_len(f->name);
  sb_indent(b, depth);
  sb_add(b, f->name, (size_t)nl);
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    sb_str(b, " {\n");
    print_message(b, *(const ProtobufCMessage *const *)p, depth + 1);
    sb_indent(b, depth);
    sb_str(b, "}\n");
    return;
  }
  sb_str(b, ": ");
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
      sb_fmt(b, "%" PRId32, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
      sb_fmt(b, "%" PRIu32, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
      sb_fmt(b, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
      sb_fmt(b, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT:
      fmt_real(num, sizeof num, *(const float *)p, 1); sb_str(b, num); break;
    case PROTOBUF_C_TYPE_DOUBLE:
      fmt_real(num, sizeof num, *(const double *)p, 0); sb_str(b, num); break;
    case PROTOBUF_C_TYPE_BOOL:
      sb_str(b, *(const protobuf_c_boolean *)p ? "true" : "false"); break;
    case PROTOBUF_C_TYPE_ENUM: {
      int v = *(const int *)p;
      const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
      if (ev) sb_str(b, ev->name);
      else sb_fmt(b, "%d", v);
      break;
    }
    case PROTOBUF_C_TYPE_STRING: {
      const char *s = *(const char *const *)p;
      print_quoted(b, (const unsigned char *)(s ? s : ""), s ? strlen(s) : 0, 0);
      break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
      const ProtobufCBinaryData *bd = p;
      print_quoted(b, bd->data ? bd->data : (const unsigned char *)"", bd->data ? bd->len : 0, 1);
      break;
    }
    default: break;
  }
  sb_add(b, "\n", 1);
}

/* Presence exactly as protobuf_c_message_pack decides it, so that printing and packing
 * agree: optional strings and messages are present when the pointer is neither NULL
 * nor the descriptor's default; other optionals by their has_ flag. */
static int field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  const char *base = (const char *)msg;
  if (f->label == PROTOBUF_C_LABEL_REPEATED)
    return *(const size_t *)(base + f->quantifier_offset) > 0;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
  if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
    const void *ptr = *(const void *const *)(base + f->offset);
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return ptr != NULL;
    return ptr != NULL && ptr != f->default_value;
  }
  if (f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
  if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
    return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
  return 1; /* proto3 unlabeled: always print */
}

static void print_message(nr__sbuf *b, const ProtobufCMessage *msg, int depth) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!field_present(msg, f)) continue;
    const char *member = (const char *)msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
      const char *arr = *(const char *const *)member;
      size_t es = elem_size(f->type);
      for (size_t k = 0; k < n; k++) print_value(b, f, arr + k * es, depth);
    } else {
      print_value(b, f, member, depth);
    }
  }
}

char *nr_text_to_string(const ProtobufCMessage *msg) {
  nr__sbuf b = {0};
  sb_add(&b, "", 0);
  print_message(&b, msg, 0);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

nr_status nr_text_print(const ProtobufCMessage *msg, FILE *f) {
  char *s = nr_text_to_string(msg);
  if (!s) return NR_ERR_NOMEM;
  size_t n = strlen(s);
  nr_status st = fwrite(s, 1, n, f) == n ? NR_OK : NR_ERR_IO;
  free(s);
  return st;
}

/* ------------------------------------------------------------------------------------ */
/* Files                                                                                 */

#define NR_MAX_FILE_BYTES ((size_t)1 << 31)

nr_status nr_proto_read_file(const char *path, char **buf, size_t *len, nr_error *err) {
  int is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  char *data = NULL;
  size_t n = 0, cap = 0;
  nr_status s;
  if (!f) return nr_err_set(err, NR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (!is_stdin && fstat(fileno(f), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      s = nr_err_set(err, NR_ERR_IO, "cannot read '%s': is a directory", path);
      goto fail;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > NR_MAX_FILE_BYTES) {
      s = nr_err_set(err, NR_ERR_INPUT, "'%s' is %lld bytes; the limit is 2 GB", path,
                     (long long)st.st_size);
      goto fail;
    }
    if (S_ISREG(st.st_mode)) cap = (size_t)st.st_size + 1;
  }
  if (cap < 4096) cap = 4096;
  data = malloc(cap);
  if (!data) {
    s = nr_err_set(err, NR_ERR_NOMEM, "out of memory reading '%s'", path);
    goto fail;
  }
  for (;;) {
    if (n + 1 >= cap) {
      if (cap > NR_MAX_FILE_BYTES) {
        s = nr_err_set(err, NR_ERR_INPUT, "'%s' is larger than the 2 GB limit", path);
        goto fail;
      }
      char *nd = realloc(data, cap * 2);
      if (!nd) {
        s = nr_err_set(err, NR_ERR_NOMEM, "out of memory reading '%s'", path);
        goto fail;
      }
      data = nd;
      cap *= 2;
    }
    size_t got = fread(data + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    s = nr_err_set(err, NR_ERR_IO, "cannot read '%s': %s", is_stdin ? "<stdin>" : path,
                   strerror(errno));
    goto fail;
  }
  if (n > NR_MAX_FILE_BYTES) {
    s = nr_err_set(err, NR_ERR_INPUT, "'%s' is larger than the 2 GB limit", path);
    goto fail;
  }
  data[n] = 0;
  if (!is_stdin) fclose(f);
  *buf = data;
  *len = n;
  return NR_OK;
fail:
  free(data);
  if (!is_stdin) fclose(f);
  return s;
}
