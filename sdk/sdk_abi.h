/* The uqbar guest ABI: layouts and codes shared by the host (src/kernel/abi.c)
 * and guests (sdk/uqbar.h). Plain C, no host or guest headers. See docs/ABI.md. */
#ifndef UQBAR_SDK_ABI_H
#define UQBAR_SDK_ABI_H

/* Message header written by receive(): little-endian u32/u64 fields.
 *  0 handle   4 kind   8 id (u64)   16 source_len   20 body_len
 * 24 metadata_len   28 context_len   32 payload_len   36 mime_len
 * 40 expects_response_s   44 error   48 flags   52 caps_len */
#define UQ_ABI_HEADER_SIZE 56

/* Send descriptor read by send():
 *  0 kind (1 request, 2 response)   4 handle (inherit from / respond to)
 *  8 target_ptr  12 target_len  16 body_ptr  20 body_len
 * 24 metadata_ptr 28 metadata_len 32 context_ptr 36 context_len
 * 40 payload_ptr 44 payload_len 48 mime_ptr 52 mime_len
 * 56 expects_response_s 60 flags */
#define UQ_ABI_SEND_SIZE 64

/* Spawn descriptor read by spawn():
 *  0 id_ptr  4 id_len (0: a fresh UUID)  8 wasm_ptr  12 wasm_len
 * 16 caps_ptr 20 caps_len (JSON array of capabilities for the child, each
 *    held or issued by the parent)  24 flags (UQ_SPAWN_*)  28 reserved */
#define UQ_ABI_SPAWN_SIZE 32
#define UQ_SPAWN_PUBLIC 1u      /* anyone may message the child */
#define UQ_SPAWN_RESTART 2u     /* on_exit Restart */
#define UQ_SPAWN_NOWAIT 4u      /* return before the child's record is durable (a node with a store waits otherwise) */
#define UQ_SPAWN_FLAGS 7u       /* every flag spawn knows; others are EINVAL */

/* message kinds */
#define UQ_KIND_REQUEST 1
#define UQ_KIND_RESPONSE 2
#define UQ_KIND_ERROR 3

/* error kinds, for UQ_KIND_ERROR */
#define UQ_ERROR_OFFLINE 1
#define UQ_ERROR_TIMEOUT 2
#define UQ_ERROR_NO_PROCESS 3
#define UQ_ERROR_REFUSED 4

/* flags (header and descriptor) */
#define UQ_ABI_HAS_PAYLOAD 1u
#define UQ_ABI_INHERIT_PAYLOAD 2u   /* descriptor only: forward the handle's payload by reference */
#define UQ_ABI_HAS_METADATA 4u
#define UQ_ABI_REMOTE 8u            /* header only: the source is another node */
#define UQ_ABI_AWAITED 16u          /* header only: someone awaits a response to this
                                       request (it expects one, or it inherited a
                                       request that does): answer with respond */
#define UQ_ABI_HAS_CAPS 32u         /* header only: capabilities came with it (field CAPS) */
#define UQ_ABI_NOWAIT 64u           /* descriptor only: send_caps returns before the record of the
                                       receiver, which now lists the capabilities, is durable (a node
                                       with a store waits otherwise) */

/* fields for msg_read */
#define UQ_FIELD_SOURCE 0
#define UQ_FIELD_BODY 1
#define UQ_FIELD_METADATA 2
#define UQ_FIELD_CONTEXT 3
#define UQ_FIELD_PAYLOAD 4
#define UQ_FIELD_MIME 5
#define UQ_FIELD_CAPS 6         /* JSON array of the tokens of the capabilities attached */

/* negative results */
#define UQ_ABI_EINVAL (-1)      /* malformed descriptor, bad address, bad field */
#define UQ_ABI_EFAULT (-2)      /* a pointer outside the process's memory */
#define UQ_ABI_ENOPROC (-3)     /* no such process (and no response was expected) */
#define UQ_ABI_EFULL (-4)       /* the target's mailbox is full: try again later */
#define UQ_ABI_EBADHANDLE (-5)  /* not a handle this process holds */
#define UQ_ABI_ETOOMANY (-6)    /* too many messages held: free some */
#define UQ_ABI_EPERM (-7)       /* not permitted (capabilities) */
#define UQ_ABI_ENOMEM (-8)      /* the host could not allocate */
#define UQ_ABI_ENORESPONSE (-9) /* responding to a request that expects no response */
#define UQ_ABI_EBADSIG (-10)    /* cap_verify: the token's signature does not match */
#define UQ_ABI_ENOTHOLDER (-11) /* cap_verify: the token was issued to someone else */
#define UQ_ABI_EREVOKED (-12)   /* cap_verify: no longer held (dropped or revoked) */
#define UQ_ABI_EEXIST (-13)     /* spawn: a process of that id exists */
#define UQ_ABI_EBADMODULE (-14) /* spawn: the bytes are not a module this node can run */
#define UQ_ABI_ENOSTORE (-15)   /* state: this node keeps no state (no home), or the process is not persisted */
#define UQ_ABI_ENOSTATE (-16)   /* state_get: nothing persisted */
#define UQ_ABI_EIO (-17)        /* state: the store could not write; the state is unchanged. spawn,
                                   send_caps, cap_drop: done, but its record could not be written */

#endif
