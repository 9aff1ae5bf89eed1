{# spikevae's cpp_standalone thresholder: Brian2's own (brian2/devices/cpp_standalone/templates/threshold.cpp),
   with the same result (the spiking neurons' indices in increasing order, their count at [N]) in two passes.
   Pass 1 writes every neuron's condition into a byte per neuron: a loop without a branch, which the compiler
   vectorises. Pass 2 reads the bytes eight at a time and looks closer only where one is set. Brian2's single
   loop branches once per neuron per step, which cost most of a step of a large group that rarely spikes. #}
{# USES_VARIABLES { N } #}
{% extends 'common_group.cpp' %}
{% block extra_headers %}
#include<cstring>
#include<vector>
{% endblock %}
{% block maincode %}

    //// MAIN CODE ////////////
    // scalar code
    const int _vectorisation_idx = -1;
    {{scalar_code|autoindent}}

    {% set _eventspace = get_array_name(eventspace_variable) %}

    // one byte per neuron, and eight more that stay 0 (pass 2 reads whole words)
    static std::vector<char> _condition_bytes(N + 8, 0);
    char* __restrict _conditions = _condition_bytes.data();
    for(size_t _idx=0; _idx<N; _idx++)
    {
        const size_t _vectorisation_idx = _idx;
        {{vector_code|autoindent}}
        _conditions[_idx] = _cond;
    }

    long _count = 0;
    for(size_t _first=0; _first<N; _first+=8)
    {
        uint64_t _word;
        std::memcpy(&_word, _conditions + _first, 8);
        if(_word == 0)
            continue;
        const size_t _last = _first + 8 < N ? _first + 8 : N;
        for(size_t _idx=_first; _idx<_last; _idx++)
        {
            if(_conditions[_idx]) {
                {{_eventspace}}[_count++] = _idx;
                {% if _uses_refractory %}
                {{not_refractory}}[_idx] = false;
                {{lastspike}}[_idx] = {{t}};
                {% endif %}
            }
        }
    }
    {{_eventspace}}[N] = _count;
{% endblock %}

{% block after_code %}
{% set _eventspace = get_array_name(eventspace_variable) %}
{{_eventspace}}[N] = 0;  // Note that this is not an off-by-1-error: the array has N+1 elements
{% endblock %}
