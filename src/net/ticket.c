/* Link resumption tickets: a small array, searched linearly (at most a few
 * hundred peers; a lookup is per link setup, not per message). */
#include "net/ticket.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

struct uqn_tickets {
    size_t n, max;
    uint64_t life_ns;
    uqn_ticket *v;
};

uqn_tickets *uqn_tickets_new(size_t max, uint64_t life_ns)
{
    uqn_tickets *t = uqi_xcalloc(1, sizeof *t);
    t->max = max ? max : UQN_TICKETS_MAX;
    t->life_ns = life_ns ? life_ns : (uint64_t)UQN_TICKET_LIFE_S * 1000000000ull;
    t->v = uqi_xcalloc(t->max, sizeof *t->v);
    return t;
}

void uqn_tickets_free(uqn_tickets *t)
{
    if (!t) return;
    sodium_memzero(t->v, t->max * sizeof *t->v);
    free(t->v);
    free(t);
}

static void drop(uqn_tickets *t, size_t i)
{
    t->v[i] = t->v[t->n - 1];
    sodium_memzero(&t->v[t->n - 1], sizeof t->v[0]);
    t->n--;
}

static void sweep(uqn_tickets *t, uint64_t now)
{
    for (size_t i = 0; i < t->n;) {
        if (t->v[i].expires <= now) drop(t, i);
        else i++;
    }
}

void uqn_tickets_put(uqn_tickets *t, const uqn_ticket *tk, uint64_t now)
{
    sweep(t, now);
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, tk->name) == 0) {
            drop(t, i);
            break;
        }
    if (t->n == t->max) { /* full: the one that expires first goes */
        size_t o = 0;
        for (size_t i = 1; i < t->n; i++)
            if (t->v[i].expires < t->v[o].expires) o = i;
        drop(t, o);
    }
    t->v[t->n] = *tk;
    t->v[t->n].expires = now + t->life_ns;
    t->n++;
}

static bool take(uqn_tickets *t, size_t i, uint64_t now, uqn_ticket *out)
{
    bool live = t->v[i].expires > now;
    if (live) *out = t->v[i];
    drop(t, i);
    return live;
}

bool uqn_tickets_take_name(uqn_tickets *t, const char *name, uint64_t now, uqn_ticket *out)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0) return take(t, i, now, out);
    return false;
}

bool uqn_tickets_take_id(uqn_tickets *t, const uint8_t id[UQN_TICKET_ID], uint64_t now, uqn_ticket *out)
{
    for (size_t i = 0; i < t->n; i++)
        if (memcmp(t->v[i].id, id, UQN_TICKET_ID) == 0) return take(t, i, now, out);
    return false;
}

size_t uqn_tickets_count(const uqn_tickets *t) { return t->n; }
