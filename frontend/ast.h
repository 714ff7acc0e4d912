/* ast.h -- the frontend's private header: tokens, the syntax tree, the model
 * object and diagnostics. Sections are named after the file defining them.
 *
 * Pipeline: fe_lex (lexer.c) -> fe_parse_tokens (parser.c, builds the AST and
 * reports syntax errors) -> fe_check (check.c: consts, names, operators,
 * arity, argument kinds, inputs and symbolic dims, the train block, recursion)
 * -> fe_lower (lower.c: evaluates the AST with bound dims into an ir_graph,
 * inlining `def` blocks and `repeat`, creating and naming parameters,
 * reporting shape errors). Every AST node keeps its source location.
 */
#ifndef LATHE_FE_AST_H
#define LATHE_FE_AST_H

#include <stdarg.h>
#include "frontend.h"

/* ---- diag.c: collecting diagnostics ----
 * Each fe_error appends "FILE:LINE:COL: error: MSG\n<line>\n<caret>\n" to the
 * buffer. After FE_MAX_ERRORS errors further ones are dropped. */
#define FE_MAX_ERRORS 20
typedef struct {
  const char *path;
  const char *src;
  size_t len;
  char *buf;      /* malloc'd, NUL-terminated; NULL while empty */
  size_t blen, bcap;
  int nerrors;
} fe_diag;

void fe_diag_init(fe_diag *d, const char *path, const char *src, size_t len);
void fe_error(fe_diag *d, ir_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fe_verror(fe_diag *d, ir_loc loc, const char *fmt, va_list ap);
/* Hand the text to the caller (malloc'd) and reset. */
char *fe_diag_take(fe_diag *d);
void fe_diag_free(fe_diag *d);

/* ---- lexer.c ---- */
typedef enum {
  TK_EOF, TK_NEWLINE, TK_IDENT, TK_NUMBER, TK_STRING,
  TK_LPAREN, TK_RPAREN, TK_LBRACKET, TK_RBRACKET, TK_LBRACE, TK_RBRACE,
  TK_COMMA, TK_COLON, TK_ASSIGN,                 /* = */
  TK_PLUS, TK_MINUS, TK_STAR, TK_SLASH, TK_SLASHSLASH, TK_PERCENT, TK_AT,
  TK_PIPE,                                       /* |> */
  /* keywords */
  TK_MODEL, TK_CONST, TK_INPUT, TK_TARGET, TK_OUTPUT, TK_LOSS, TK_DEF,
  TK_RETURN, TK_TRAIN, TK_TRUE, TK_FALSE
} fe_tokkind;

typedef struct {
  fe_tokkind kind;
  const char *text;   /* identifier / string contents (unescaped), arena-owned */
  double num;
  int num_is_int;     /* written with neither '.' nor exponent */
  ir_loc loc;
} fe_token;

/* Tokenise the whole source. Newlines inside ( ) [ ] and after a trailing
 * operator or comma are dropped (line continuation). Lexical errors go to d;
 * the token array always ends with TK_EOF. */
fe_token *fe_lex(arena *A, fe_diag *d, const char *path, const char *src, size_t len, int *ntok);
const char *fe_tok_name(fe_tokkind k); /* for messages: "')'", "newline", ... */

/* ---- the syntax tree ---- */
typedef enum {
  EX_NUM, EX_STR, EX_BOOL, EX_NAME, EX_LIST, EX_CALL, EX_BINOP, EX_NEG
} fe_exkind;

typedef struct fe_expr fe_expr;

typedef struct {
  const char *name;
  fe_expr *value;
  ir_loc loc;          /* of the name */
} fe_namedarg;

struct fe_expr {
  fe_exkind kind;
  ir_loc loc;          /* the expression's first token; for BINOP the operator */
  double num;          /* EX_NUM; EX_BOOL: 0/1 */
  int num_is_int;
  const char *str;     /* EX_STR contents, EX_NAME name, EX_CALL callee */
  int op;              /* EX_BINOP: a fe_tokkind (TK_PLUS ... TK_AT) */
  fe_expr *lhs, *rhs;  /* EX_BINOP; EX_NEG uses lhs */
  fe_expr **items;     /* EX_LIST items, EX_CALL positional args (after |> desugaring) */
  int nitems;
  fe_namedarg *named;  /* EX_CALL named args */
  int nnamed;
};

typedef enum {
  ST_MODEL,   /* name */
  ST_CONST,   /* name = value (one statement per name in `const A = 1, B = 2`) */
  ST_INPUT,   /* input/target name : dtype[dims]; is_target */
  ST_ASSIGN,  /* name = value; or a, b, ... = value (a list: split) with names[] */
  ST_OUTPUT,  /* output name [= value]; value NULL exports an existing binding */
  ST_LOSS,    /* loss = value */
  ST_DEF,     /* def name(params) { body } */
  ST_RETURN,  /* return value (inside def bodies) */
  ST_TRAIN    /* train { key = value ... }: kv */
} fe_stkind;

typedef struct fe_stmt fe_stmt;
struct fe_stmt {
  fe_stkind kind;
  ir_loc loc;          /* the statement's first token */
  const char *name;
  ir_loc name_loc;
  fe_expr *value;
  /* ST_INPUT */
  int is_target;
  ir_dtype dtype;
  ir_loc dtype_loc;
  fe_expr **dims;
  int ndims;
  /* ST_DEF */
  const char **params;
  ir_loc *param_locs;
  int nparams;
  fe_stmt **body;
  int nbody;
  /* ST_TRAIN */
  fe_namedarg *kv;
  int nkv;
  /* ST_ASSIGN binding several names (`a, b = split(x, 2, axis=1)`): name is
   * names[0]; nnames is 0 for a single name */
  const char **names;
  ir_loc *name_locs;
  int nnames;
};

/* ---- the model object (owned by fe_parse's caller) ---- */
typedef struct {
  const char *name;
  ir_dtype dtype;
  int is_target;
  int rank;
  int64_t dim[IR_MAXDIM];  /* -1 when symbolic */
  int sym[IR_MAXDIM];      /* index into syms when symbolic, else -1 */
  ir_loc loc;
} fe_inputdecl;

struct fe_model {
  arena A;
  const char *path;
  const char *src;         /* arena copy of the source */
  size_t len;
  const char *name;        /* model name (statement or file stem) */
  fe_stmt **stmts;         /* top level, in order */
  int nstmts;
  /* filled by fe_check: */
  fe_inputdecl *inputs;
  int ninputs;
  const char **syms;
  int nsyms;
};

/* ---- parser.c: tokens -> statements; syntax errors to d ---- */
int fe_parse_tokens(fe_model *m, fe_diag *d, const fe_token *toks, int ntok);

/* ---- check.c: everything that can be checked before dims are bound ---- */
int fe_check(fe_model *m, fe_diag *d);

#endif
