/* uqbar: umbrella header of the public API. */
#ifndef UQBAR_H
#define UQBAR_H

#include "uqbar/err.h"

#define UQ_VERSION "0.1.0"

#endif
