// mixer_gdn_views.h — what the Gated DeltaNet mixer (mixer_gdn.c) saves for its backward and its
// backward scratch; part of the MixerSaved / MixerScratch unions of mixer.h.
#ifndef LL_MIXER_GDN_VIEWS_H
#define LL_MIXER_GDN_VIEWS_H

typedef struct {
    float *proj;        // (N, R) [q | k | v | a | b | g | l] projections, placeholder until mixer_gdn.c lands
} GdnSaved;
typedef struct {
    float *dproj;       // (N, R)
} GdnScratch;

#endif
